package images

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ferryhq/ferry/node/archive"
)

// WriteLayer writes layer id as a tar stream (overlay whiteouts kept as they are stored), for sending it to
// another node.
func (s *Store) WriteLayer(ctx context.Context, id string, w io.Writer) error {
	if !s.HasLayer(id) {
		return fmt.Errorf("%w: layer %s is not on this node", ErrMissingLayer, id)
	}
	_, err := archive.Write(ctx, w, s.LayerPath(id), archive.WriteOptions{})
	return err
}

// ReceiveLayer stores layer id from a tar stream written by WriteLayer on another node. The layer keeps the
// id it has there: its content was checked end to end by the transfer (sha256 per file) and it came from an
// authenticated agent, but the tar bytes are not the original layer's, so the id cannot be recomputed here.
// A layer already stored is not replaced.
func (s *Store) ReceiveLayer(ctx context.Context, id string, r io.Reader) error {
	if s.LayerPath(id) == "" {
		return fmt.Errorf("%w: %q is not a layer id", ErrBadArchive, id)
	}
	if s.HasLayer(id) {
		_, err := io.Copy(io.Discard, r)
		return err
	}
	tmp, err := s.tempDir("received-")
	if err != nil {
		return err
	}
	x, err := s.extractTo(ctx, r, tmp, archive.WhiteoutsKeep, "layer "+id)
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	x.id = id
	if err := s.commitLayer(tmp, x); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if s.HasLayer(id) {
		os.RemoveAll(tmp) // someone else stored it meanwhile; tmp was not moved
	}
	return nil
}

// PutImage records an image whose layers are all in the store (an image received from another node).
func (s *Store) PutImage(img *Image) error {
	if err := ValidateName(img.Name); err != nil {
		return err
	}
	for _, id := range img.Layers {
		if !s.HasLayer(id) {
			return fmt.Errorf("%w: layer %s of image %s", ErrMissingLayer, id, img.Name)
		}
	}
	return s.putImage(img)
}
