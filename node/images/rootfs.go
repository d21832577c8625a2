package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferryhq/ferry/node/archive"
)

// importRootfsDir stores a root file system directory as one layer. It
// streams archive.Write of the directory into the same extraction path as
// any layer, so the layer id is the digest of that (deterministic) tar.
func (j *importJob) importRootfsDir(ctx context.Context, dir string) (*Image, error) {
	if strings.HasPrefix(j.s.dir+"/", strings.TrimSuffix(dir, "/")+"/") {
		return nil, fmt.Errorf("the image store %s lies inside %s; import a directory that does not contain it", j.s.dir, dir)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		_, err := archive.Write(ctx, pw, dir, archive.WriteOptions{})
		pw.CloseWithError(err)
		werr <- err
	}()
	id, err := j.extractLayer(ctx, j.p.reader(pr), archive.WhiteoutsDrop, "", dir, nil)
	pr.CloseWithError(io.ErrClosedPipe) // stops the writer if extraction stopped first
	cancel()
	if wErr := <-werr; err != nil && wErr != nil && !errors.Is(wErr, io.ErrClosedPipe) && !errors.Is(wErr, context.Canceled) {
		return nil, fmt.Errorf("read %s: %w", dir, wErr) // the source's fault, not the archive's
	}
	if err != nil {
		return nil, err
	}
	return rootfsImage(id, j.layerSize(id), "rootfs-dir")
}

// rootfsImage makes the record of a one-layer image without a config. Its
// ID is the digest of the canonical JSON of its layers and config, so the
// same root file system gets the same ID under any name.
func rootfsImage(layer string, size int64, source string) (*Image, error) {
	img := &Image{Layers: []string{layer}, Size: size, Source: source}
	canon, err := json.Marshal(struct {
		Layers []string    `json:"layers"`
		Config ImageConfig `json:"config"`
	}{img.Layers, img.Config})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canon)
	img.ID = "sha256:" + hex.EncodeToString(sum[:])
	return img, nil
}
