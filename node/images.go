package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/node/images"
)

// ImportImage imports a rootfs tarball or directory, a docker save archive or an OCI layout or archive found
// at path on this node, under name.
func (a *Agent) ImportImage(ctx context.Context, name, path string, progress ProgressFunc) (*images.Image, error) {
	ph := newPhaser(progress)
	ph.phase("importing", path)
	img, err := a.images.Import(ctx, name, path, func(done int64) {
		if progress != nil {
			progress(Progress{Phase: "importing", Detail: path, Bytes: done, Elapsed: time.Since(ph.start)})
		}
	})
	if err != nil {
		switch {
		case errors.Is(err, images.ErrInvalidName):
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		case errors.Is(err, images.ErrBadArchive):
			return nil, fmt.Errorf("%w: importing %s: %v; nothing was imported", ErrRejected, path, err)
		}
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	a.log.Info("image imported", "image", img.Name, "id", img.ID, "layers", len(img.Layers), "size", img.Size)
	return img, nil
}

// ListImages lists the node's images.
func (a *Agent) ListImages() ([]*images.Image, error) { return a.images.List() }
