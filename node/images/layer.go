package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node/archive"
)

// maxTrailing bounds the bytes accepted after a tar's end-of-archive
// marker (tar pads its output to a record of 10 KiB; some tools more).
const maxTrailing = 1 << 20

// digestRE is compiled at its first use, as the other patterns of this package: bounded repeats make large
// programs, and every ferry process (a command line, a shim) would pay for them at its start.
var digestRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^sha256:[a-f0-9]{64}$`) })

// layerRecord is layers/sha256/<hex>.json.
type layerRecord struct {
	ID      string    `json:"id"`
	Size    int64     `json:"size"`    // bytes of the uncompressed tar
	Entries int64     `json:"entries"` // tar entries
	Created time.Time `json:"created"`
}

// LayerPath returns the directory of layer id ("sha256:<hex>"), whether or
// not it is in the store; "" if id is not a sha256 digest.
func (s *Store) LayerPath(id string) string {
	if !digestRE().MatchString(id) {
		return ""
	}
	return filepath.Join(s.layersDir(), strings.TrimPrefix(id, "sha256:"))
}

// HasLayer reports whether layer id ("sha256:<hex>") is in the store.
func (s *Store) HasLayer(id string) bool {
	p := s.LayerPath(id)
	if p == "" {
		return false
	}
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// LayerDirs returns the directories of img's layers top first, ready to
// be joined with ":" into an overlayfs lowerdir option.
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	dirs := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		id := img.Layers[i]
		if !s.HasLayer(id) {
			return nil, fmt.Errorf("%w: layer %s of image %q; import the image again", ErrMissingLayer, id, img.Name)
		}
		dirs = append(dirs, s.LayerPath(id))
	}
	return dirs, nil
}

// layerSize returns the recorded tar size of a stored layer, 0 if unknown.
func (s *Store) layerSize(id string) int64 {
	data, err := os.ReadFile(s.LayerPath(id) + ".json")
	if err != nil {
		return 0
	}
	var rec layerRecord
	if json.Unmarshal(data, &rec) != nil {
		return 0
	}
	return rec.Size
}

// extracted is what extractTo found out about a tar stream.
type extracted struct {
	id    string // "sha256:" of the stream
	size  int64  // bytes of the stream
	stats archive.Stats
}

// extractTo extracts the uncompressed tar stream r into dir while hashing
// it, including what follows the end-of-archive marker (bounded), so that
// the digest is that of the whole stream.
func (s *Store) extractTo(ctx context.Context, r io.Reader, dir string, mode archive.WhiteoutMode, what string) (extracted, error) {
	h := sha256.New()
	n := &countWriter{}
	tee := io.TeeReader(r, io.MultiWriter(h, n))
	opts := archive.ExtractOptions{Whiteouts: mode, MaxBytes: s.maxBytes, MaxEntries: s.maxEntries}
	st, err := archive.Extract(ctx, tee, dir, opts)
	if err != nil {
		return extracted{}, archiveErr(what, err)
	}
	rest, err := io.Copy(io.Discard, io.LimitReader(tee, maxTrailing+1))
	if err != nil {
		return extracted{}, archiveErr(what, fmt.Errorf("%w: after the end of the tar: %w", archive.ErrCorrupt, err))
	}
	if rest > maxTrailing {
		return extracted{}, fmt.Errorf("%w: %s: more than %d bytes follow the end of the tar", ErrBadArchive, what, maxTrailing)
	}
	return extracted{id: "sha256:" + hex.EncodeToString(h.Sum(nil)), size: n.n, stats: st}, nil
}

// archiveErr wraps an error of the archive package: a refusal of the
// archive becomes ErrBadArchive; cancellation and local I/O errors stay
// what they are.
func archiveErr(what string, err error) error {
	for _, bad := range []error{archive.ErrUnsafePath, archive.ErrCorrupt, archive.ErrTooLarge, archive.ErrUnsupported} {
		if errors.Is(err, bad) {
			return fmt.Errorf("%w: %s: %w", ErrBadArchive, what, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// extractLayer extracts the uncompressed layer tar r into a staging
// directory of the job and returns its id. With want set, the stream must
// hash to it. verify, if set, runs after extraction and before the layer
// is accepted (the caller checks the digest of the compressed blob there).
func (j *importJob) extractLayer(ctx context.Context, r io.Reader, mode archive.WhiteoutMode, want, what string, verify func() error) (string, error) {
	tmp, err := j.s.tempDir("layer-")
	if err != nil {
		return "", err
	}
	j.s.layerExtractions.Add(1)
	x, err := j.s.extractTo(ctx, r, tmp, mode, what)
	if err == nil && verify != nil {
		err = verify()
	}
	if err == nil && want != "" && x.id != want {
		err = fmt.Errorf("%w: %s: uncompressed content hashes to %s, but the image config says %s; "+
			"the archive is damaged, save or fetch it again", ErrBadArchive, what, x.id, want)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	j.add(tmp, x)
	return x.id, nil
}

// commitLayer moves the extracted tree tmp into place as layer x.id,
// unless that layer is already stored (then tmp is left to the caller's
// clean-up): layers are stored once, and a layer in place is never
// replaced, so images using it are not disturbed.
func (s *Store) commitLayer(tmp string, x extracted) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.HasLayer(x.id) {
		s.log.Debug("layer already stored", "layer", x.id)
		return nil
	}
	final := s.LayerPath(x.id)
	rec, err := json.Marshal(layerRecord{ID: x.id, Size: x.size, Entries: x.stats.Entries, Created: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(final+".json", rec); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("store layer %s: %w", x.id, err)
	}
	s.log.Info("layer stored", "layer", x.id, "size", x.size, "entries", x.stats.Entries)
	return nil
}

// tempDir makes a staging directory under the store's tmp/. Its mode is
// 0755 because it may become a layer's root, which is the container's /
// unless the tar says otherwise.
func (s *Store) tempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp(s.tmpDir(), prefix)
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
