package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Names of the parts of a checkpoint directory.
const (
	ManifestFile = "manifest.json"
	RecordFile   = "container.json"
	DiffFile     = "rootfs-diff.tar"
	ImagesDir    = "images"
	LogsDir      = "logs"
	// TmpfsDir holds a tar of each of the container's own tmpfs (/dev, /dev/shm) that CRIU's images name as
	// external mounts, named by key: KEY.tar. A checkpoint made before there was one has none (CRIU's images
	// hold those tmpfs then).
	TmpfsDir = "tmpfs"
)

// TmpfsFile is the tar of the container's tmpfs key in checkpoint directory dir.
func TmpfsFile(dir, key string) string { return filepath.Join(dir, TmpfsDir, key+".tar") }

// Checkpoint is a finished checkpoint directory.
type Checkpoint struct {
	ID  string
	Dir string
}

// NewID returns a new checkpoint ID: the time and 4 random bytes, so that IDs sort by creation.
func NewID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// ValidID reports whether id has the shape NewID makes (so it is safe as a path element).
func ValidID(id string) bool {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "/\\.") {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// Pending is a checkpoint being written, in a temporary directory beside its final place.
type Pending struct {
	ID    string
	Dir   string // temporary directory
	final string
}

// Begin creates a temporary directory for checkpoint id under parent.
func Begin(parent, id string) (*Pending, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("invalid checkpoint id %q", id)
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, ".pending-"+id+"-")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{ImagesDir, LogsDir} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &Pending{ID: id, Dir: dir, final: filepath.Join(parent, id)}, nil
}

// ImagesDir is where CRIU writes its images.
func (p *Pending) ImagesDir() string { return filepath.Join(p.Dir, ImagesDir) }

// LogsDir is CRIU's work directory (dump.log, stats-dump).
func (p *Pending) LogsDir() string { return filepath.Join(p.Dir, LogsDir) }

// DiffPath is where the writable layer's tar goes.
func (p *Pending) DiffPath() string { return filepath.Join(p.Dir, DiffFile) }

// WriteRecord writes the container's recorded configuration as JSON.
func (p *Pending) WriteRecord(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.Dir, RecordFile), b, 0o600)
}

// Abort removes the temporary directory.
func (p *Pending) Abort() { _ = os.RemoveAll(p.Dir) }

// Finish hashes every file, writes the manifest, and renames the directory into its final place.
func (p *Pending) Finish(ctx context.Context) (*Checkpoint, *Manifest, error) {
	m, err := BuildManifest(ctx, p.Dir)
	if err != nil {
		return nil, nil, err
	}
	m.ID = p.ID
	m.Created = time.Now().UTC()
	if err := m.write(p.Dir); err != nil {
		return nil, nil, err
	}
	if err := os.Rename(p.Dir, p.final); err != nil {
		return nil, nil, fmt.Errorf("moving checkpoint into place: %w", err)
	}
	return &Checkpoint{ID: p.ID, Dir: p.final}, m, nil
}

// Publish moves the checkpoint into its final place before it has a manifest, for a restore that must not
// wait for every file to be hashed again (a migration's, whose every byte was checked in transit). Until
// seal has hashed the files and written the manifest, Open and List do not see the checkpoint; seal may
// run while the files are read (a lazy restore) but not while they change.
func (p *Pending) Publish() (ck *Checkpoint, seal func(context.Context) (*Manifest, error), err error) {
	if err := os.Rename(p.Dir, p.final); err != nil {
		return nil, nil, fmt.Errorf("moving checkpoint into place: %w", err)
	}
	ck = &Checkpoint{ID: p.ID, Dir: p.final}
	seal = func(ctx context.Context) (*Manifest, error) {
		m, err := BuildManifest(ctx, ck.Dir)
		if err != nil {
			return nil, err
		}
		m.ID = p.ID
		m.Created = time.Now().UTC()
		return m, m.write(ck.Dir)
	}
	return ck, seal, nil
}

// Open returns the finished checkpoint id under parent.
func Open(parent, id string) (*Checkpoint, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q is not a checkpoint id", ErrNotFound, id)
	}
	dir := filepath.Join(parent, id)
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, err
	}
	return &Checkpoint{ID: id, Dir: dir}, nil
}

// List returns the IDs of the finished checkpoints under parent, oldest first.
func List(parent string) ([]string, error) {
	ents, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidID(e.Name()) {
			if _, err := os.Stat(filepath.Join(parent, e.Name(), ManifestFile)); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// ImagesDir is where CRIU's images are.
func (c *Checkpoint) ImagesDir() string { return filepath.Join(c.Dir, ImagesDir) }

// LogsDir holds CRIU's dump log and statistics.
func (c *Checkpoint) LogsDir() string { return filepath.Join(c.Dir, LogsDir) }

// DiffPath is the writable layer's tar.
func (c *Checkpoint) DiffPath() string { return filepath.Join(c.Dir, DiffFile) }

// ReadRecord decodes the recorded configuration into v. Call Verify first.
func (c *Checkpoint) ReadRecord(v any) error {
	b, err := os.ReadFile(filepath.Join(c.Dir, RecordFile))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Manifest reads the checkpoint's manifest.
func (c *Checkpoint) Manifest() (*Manifest, error) { return ReadManifest(c.Dir) }

// Verify checks every file against the manifest; see VerifyDir.
func (c *Checkpoint) Verify(ctx context.Context) error { return VerifyDir(ctx, c.Dir) }
