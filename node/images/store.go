package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Image is the record of one imported image.
type Image struct {
	Name string `json:"name"`
	// ID is "sha256:<hex>": the digest of the image config for docker and
	// OCI images, of the record's canonical JSON (layers and config) for
	// root file systems.
	ID string `json:"id"`
	// Layers are the layer ids, "sha256:<hex>" of each layer's
	// uncompressed tar (the OCI diffID), bottom first.
	Layers []string    `json:"layers"`
	Config ImageConfig `json:"config"`
	// Size is the total size of the layers' uncompressed tar streams.
	Size int64 `json:"size"`
	// Created is when the image was imported into this store.
	Created time.Time `json:"created"`
	// Source is the format imported: "rootfs-tar", "rootfs-dir",
	// "docker-archive", "oci-layout" or "oci-archive".
	Source string `json:"source"`
}

// ImageConfig is the part of an image's configuration that the runtime
// uses to start it.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Store is a content-addressed image store in one directory:
//
//	layers/sha256/<hex>/      a layer's extracted tree, whiteouts in overlayfs form
//	layers/sha256/<hex>.json  its record (size, created)
//	images/<name>.json        image records
//	tmp/                      staging of imports in progress
//
// A Store is safe for concurrent use. Only one Store (one process) may use
// a directory at a time: Open clears tmp/ of what an earlier one left.
type Store struct {
	dir string
	log *slog.Logger

	// mu serialises changes to image records and the commit of layers;
	// extraction itself runs outside it.
	mu sync.Mutex

	// maxBytes and maxEntries bound each tar read by an import (file
	// content and entries); zero means the archive package's defaults.
	maxBytes, maxEntries int64

	layerExtractions atomic.Int64 // layers extracted, for tests of dedupe
}

// Open opens the store in dir, creating it if needed. A nil logger means
// slog.Default().
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: abs, log: logger.With("store", abs)}
	for _, d := range []string{s.layersDir(), s.imagesDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	if err := s.clearTmp(); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

func (s *Store) layersDir() string { return filepath.Join(s.dir, "layers", "sha256") }
func (s *Store) imagesDir() string { return filepath.Join(s.dir, "images") }
func (s *Store) tmpDir() string    { return filepath.Join(s.dir, "tmp") }

func (s *Store) recordPath(name string) string {
	return filepath.Join(s.imagesDir(), name+".json")
}

// clearTmp removes staging left by an import that did not finish.
func (s *Store) clearTmp() error {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		s.log.Info("removing staging left by an unfinished import", "path", e.Name())
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the image called name.
func (s *Store) Get(name string) (*Image, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q is not in the image store; import it with `ferry image import %s PATH`",
			ErrUnknownImage, name, name)
	}
	if err != nil {
		return nil, err
	}
	var img Image
	if err := json.Unmarshal(data, &img); err != nil {
		return nil, fmt.Errorf("image record %s is damaged (%w); import the image again", s.recordPath(name), err)
	}
	return &img, nil
}

// List returns every image, sorted by name.
func (s *Store) List() ([]*Image, error) {
	ents, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || ValidateName(name) != nil {
			continue // temporary files of a record being written
		}
		img, err := s.Get(name)
		if errors.Is(err, ErrUnknownImage) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes the image record called name. Its layers stay in the
// store (other images may share them).
func (s *Store) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := os.Remove(s.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q is not in the image store; see `ferry image ls`", ErrUnknownImage, name)
	}
	if err == nil {
		s.log.Info("image removed", "image", name)
	}
	return err
}

// putImage writes img's record atomically, replacing any of that name.
func (s *Store) putImage(img *Image) error {
	data, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, err := s.Get(img.Name); err == nil {
		s.log.Info("replacing image record", "image", img.Name, "old_id", old.ID, "new_id", img.ID)
	}
	return writeFileAtomic(s.recordPath(img.Name), data)
}

// writeFileAtomic writes data to a temporary file beside path, syncs it
// and renames it over path, so readers see the old or the new file whole.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
