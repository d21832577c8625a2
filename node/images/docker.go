package images

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/ferryhq/ferry/node/archive"
)

// dockerManifestEntry is one element of a `docker save` manifest.json.
// Paths are relative to the archive's root: "<hex>.json" and
// "<id>/layer.tar" in the classic layout, "blobs/sha256/<hex>" in the
// OCI-shaped one of Docker 25 and later.
type dockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// parseDockerManifest parses manifest.json and checks that every path in
// it is local (no absolute path, no "..").
func parseDockerManifest(data []byte) ([]dockerManifestEntry, error) {
	var m []dockerManifestEntry
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest.json is not a docker save manifest (%w); "+
			"if this is a root file system, move manifest.json out of its top directory", ErrBadArchive, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("%w: manifest.json lists no images", ErrBadArchive)
	}
	for i, e := range m {
		if !localPath(e.Config) {
			return nil, fmt.Errorf("%w: manifest.json image %d: config path %q is not inside the archive", ErrBadArchive, i, e.Config)
		}
		if len(e.Layers) == 0 {
			return nil, fmt.Errorf("%w: manifest.json image %d lists no layers", ErrBadArchive, i)
		}
		for _, l := range e.Layers {
			if !localPath(l) {
				return nil, fmt.Errorf("%w: manifest.json image %d: layer path %q is not inside the archive", ErrBadArchive, i, l)
			}
		}
	}
	return m, nil
}

func localPath(p string) bool { return p != "" && filepath.IsLocal(p) }

// importDocker imports an unpacked `docker save` archive rooted at root.
func (j *importJob) importDocker(ctx context.Context, root string) (*Image, error) {
	data, err := readJSONFile(root, "manifest.json")
	if err != nil {
		return nil, err
	}
	entries, err := parseDockerManifest(data)
	if err != nil {
		return nil, err
	}
	e, cfgData, cfg, err := j.s.pickDockerImage(root, entries)
	if err != nil {
		return nil, err
	}
	img := &Image{ID: digestOf(cfgData), Config: cfg.imageConfig(), Source: "docker-archive"}
	for i, rel := range e.Layers {
		id, err := j.dockerLayer(ctx, root, rel, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, id)
		img.Size += j.layerSize(id)
	}
	return img, nil
}

// pickDockerImage chooses the image for linux on this architecture, or
// else the first, and returns its entry and config.
func (s *Store) pickDockerImage(root string, entries []dockerManifestEntry) (dockerManifestEntry, []byte, *imageConfigJSON, error) {
	type choice struct {
		e    dockerManifestEntry
		data []byte
		cfg  *imageConfigJSON
	}
	var first *choice
	for _, e := range entries {
		data, cfg, err := readDockerConfig(root, e)
		if err != nil {
			return e, nil, nil, err
		}
		if matchesHost(cfg.OS, cfg.Architecture) {
			return e, data, cfg, nil
		}
		if first == nil {
			first = &choice{e, data, cfg}
		}
	}
	s.log.Warn("no image in the archive is for this platform; taking the first",
		"os", first.cfg.OS, "architecture", first.cfg.Architecture)
	return first.e, first.data, first.cfg, nil
}

var hexInName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?:^|/)([a-f0-9]{64})(?:\.json)?$`) })

// readDockerConfig reads and checks the config of e. A config named by
// its digest (both layouts do) must hash to it.
func readDockerConfig(root string, e dockerManifestEntry) ([]byte, *imageConfigJSON, error) {
	data, err := readJSONFile(root, e.Config)
	if err != nil {
		return nil, nil, err
	}
	if m := hexInName().FindStringSubmatch(e.Config); m != nil && digestOf(data) != "sha256:"+m[1] {
		return nil, nil, fmt.Errorf("%w: config %s: content hashes to %s; the archive is damaged, save it again",
			ErrBadArchive, e.Config, digestOf(data))
	}
	cfg, err := parseImageConfig(data, e.Config)
	if err != nil {
		return nil, nil, err
	}
	if err := checkLayerCount(len(e.Layers), cfg, "manifest.json entry of "+e.Config); err != nil {
		return nil, nil, err
	}
	return data, cfg, nil
}

// dockerLayer stores the layer at rel, which must have diffID want,
// unless that layer is already stored.
func (j *importJob) dockerLayer(ctx context.Context, root, rel, want string) (string, error) {
	if j.has(want) {
		j.s.log.Debug("layer already stored; not extracting it again", "layer", want, "path", rel)
		return want, nil
	}
	f, err := openInRoot(root, rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, done, err := decompress(j.p.reader(f), "layer "+rel)
	if err != nil {
		return "", err
	}
	defer done()
	return j.extractLayer(ctx, r, archive.WhiteoutsOverlay, want, "layer "+rel, nil)
}
