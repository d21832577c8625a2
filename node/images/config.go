package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
)

// imageConfigJSON is the part of an OCI/docker image config read here.
type imageConfigJSON struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
		User       string   `json:"User"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// parseImageConfig parses an image config and checks its layer list.
func parseImageConfig(data []byte, what string) (*imageConfigJSON, error) {
	var c imageConfigJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: image config %s: %w", ErrBadArchive, what, err)
	}
	if c.RootFS.Type != "layers" || len(c.RootFS.DiffIDs) == 0 {
		return nil, fmt.Errorf("%w: image config %s lists no layers (rootfs.type %q)", ErrBadArchive, what, c.RootFS.Type)
	}
	for _, d := range c.RootFS.DiffIDs {
		if !digestRE().MatchString(d) {
			return nil, fmt.Errorf("%w: image config %s: diff_id %q is not a sha256 digest", ErrBadArchive, what, d)
		}
	}
	return &c, nil
}

func (c *imageConfigJSON) imageConfig() ImageConfig {
	return ImageConfig{
		Env:        c.Config.Env,
		Entrypoint: c.Config.Entrypoint,
		Cmd:        c.Config.Cmd,
		WorkingDir: c.Config.WorkingDir,
		User:       c.Config.User,
	}
}

// matchesHost reports whether an image is for linux on this machine's
// architecture.
func matchesHost(os, arch string) bool {
	return os == "linux" && arch == runtime.GOARCH
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkLayerCount compares a manifest's layers with the config's diff_ids.
func checkLayerCount(layers int, c *imageConfigJSON, what string) error {
	if layers != len(c.RootFS.DiffIDs) {
		return fmt.Errorf("%w: %s lists %d layers but its config lists %d diff_ids",
			ErrBadArchive, what, layers, len(c.RootFS.DiffIDs))
	}
	return nil
}

func hostPlatform() string { return "linux/" + runtime.GOARCH }
