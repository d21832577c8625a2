package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ManifestVersion is the version of the manifest format written by this package.
const ManifestVersion = 1

// maxManifestBytes bounds the manifest read from disk.
const maxManifestBytes = 16 << 20

// File is one file of a checkpoint.
type File struct {
	Path   string `json:"path"` // slash-separated, relative to the checkpoint directory
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest lists the files of a checkpoint with their sizes and sums.
type Manifest struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Files   []File    `json:"files"`
}

// Size is the total size of the files listed.
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// covered says whether a relative path belongs under the manifest (logs and the manifest itself do not).
func covered(rel string) bool {
	return rel != ManifestFile && rel != ManifestFile+".tmp" && rel != LogsDir && !strings.HasPrefix(rel, LogsDir+"/")
}

// BuildManifest hashes every regular file under dir that the manifest covers. Anything but regular files and
// directories is refused: a checkpoint holds nothing else.
func BuildManifest(ctx context.Context, dir string) (*Manifest, error) {
	m := &Manifest{Version: ManifestVersion}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." || !covered(rel) {
			if d.IsDir() && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, rel)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		size, sum, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, File{Path: rel, Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m, nil
}

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func (m *Manifest) write(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	// Written aside and renamed, so that a manifest is either whole or absent.
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
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
	return os.Rename(tmp, filepath.Join(dir, ManifestFile))
}

// ReadManifest reads and checks the shape of dir's manifest (paths relative and inside, no duplicates).
func ReadManifest(dir string) (*Manifest, error) {
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s", ErrNoManifest, dir)
		}
		return nil, err
	}
	defer f.Close()
	return DecodeManifest(io.LimitReader(f, maxManifestBytes))
}

// DecodeManifest decodes and validates a manifest from outside bytes.
func DecodeManifest(r io.Reader) (*Manifest, error) {
	var m Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest does not decode: %v", ErrCorrupt, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks that the manifest's paths are clean, relative, unique and covered, and sizes sane.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("%w: manifest version %d, this agent reads %d", ErrCorrupt, m.Version, ManifestVersion)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if f.Path == "" || path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == ".." ||
			strings.HasPrefix(f.Path, "../") || strings.Contains(f.Path, "\\") || !covered(f.Path) {
			return fmt.Errorf("%w: manifest lists an unsafe path %q", ErrCorrupt, f.Path)
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: manifest lists %s twice", ErrCorrupt, f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 || len(f.SHA256) != 64 {
			return fmt.Errorf("%w: manifest entry for %s has a bad size or sum", ErrCorrupt, f.Path)
		}
	}
	return nil
}

// VerifyDir checks every file under dir against its manifest: each listed file must exist with the listed size
// and sha256, and no unlisted file may be present. The error names the first file that differs.
func VerifyDir(ctx context.Context, dir string) error {
	want, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	got, err := BuildManifest(ctx, dir)
	if err != nil {
		return err
	}
	have := make(map[string]Sum, len(got.Files))
	for _, f := range got.Files {
		have[f.Path] = Sum{Size: f.Size, SHA256: f.SHA256}
	}
	return matchFiles(want, have, func(string) bool { return true })
}
