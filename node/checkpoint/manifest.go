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

// ManifestVersion is the version of the manifest format written by this package. Version 2 sums every file
// in pieces of ChunkSize bytes (Chunks); version 1 (still read and verified) has one sum per file (SHA256).
const ManifestVersion = 2

// ChunkSize is the piece of a file that a version 2 manifest sums on its own. It is the unit in which a
// checkpoint travels between agents (each piece is checked on arrival against the sum its sender took as it
// read it), so that the sums a transfer checked prove the received files against the manifest without
// reading them again.
const ChunkSize = 8 << 20

// maxManifestBytes bounds the manifest read from disk.
const maxManifestBytes = 16 << 20

// File is one file of a checkpoint.
type File struct {
	Path string `json:"path"` // slash-separated, relative to the checkpoint directory
	Size int64  `json:"size"`
	// SHA256 is the whole file's sum (version 1 manifests).
	SHA256 string `json:"sha256,omitempty"`
	// Chunks are the sums of the file's pieces of the manifest's ChunkSize bytes, in order (version 2
	// manifests): numChunks(Size, ChunkSize) of them; an empty file has one, the sum of nothing.
	Chunks []string `json:"chunks,omitempty"`
}

// Manifest lists the files of a checkpoint with their sizes and sums.
type Manifest struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	ChunkSize int64     `json:"chunk_size,omitempty"` // version 2: the piece each of a file's Chunks sums
	Files     []File    `json:"files"`
}

// numChunks is how many pieces of chunk bytes a file of size bytes has (at least one).
func numChunks(size, chunk int64) int {
	if size <= chunk {
		return 1
	}
	return int((size + chunk - 1) / chunk)
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

// BuildManifest hashes every regular file under dir that the manifest covers, reading each once and summing
// it in pieces of ChunkSize (a version 2 manifest). Anything but regular files and directories is refused: a
// checkpoint holds nothing else.
func BuildManifest(ctx context.Context, dir string) (*Manifest, error) {
	return buildManifest(ctx, dir, ManifestVersion, ChunkSize)
}

// buildManifest hashes dir's files the way a manifest of the given version sums them (version 1: whole
// files; version 2: pieces of chunk bytes).
func buildManifest(ctx context.Context, dir string, version int, chunk int64) (*Manifest, error) {
	m := &Manifest{Version: version}
	if version >= 2 {
		m.ChunkSize = chunk
	} else {
		chunk = 0
	}
	buf := make([]byte, 1<<20)
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
		f, err := hashFile(ctx, p, chunk, buf)
		if err != nil {
			return err
		}
		f.Path = rel
		m.Files = append(m.Files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m, nil
}

// hashFile reads the file at p once: with chunk 0 it returns its size and whole sum (SHA256), otherwise its
// size and the sums of its pieces of chunk bytes (Chunks).
func hashFile(ctx context.Context, p string, chunk int64, buf []byte) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	if chunk == 0 {
		h := sha256.New()
		n, err := io.CopyBuffer(h, f, buf)
		if err != nil {
			return File{}, fmt.Errorf("reading %s: %w", p, err)
		}
		return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
	}
	var out File
	h := sha256.New()
	for {
		if err := ctx.Err(); err != nil {
			return File{}, err
		}
		h.Reset()
		n, err := io.CopyBuffer(h, io.LimitReader(f, chunk), buf)
		if err != nil {
			return File{}, fmt.Errorf("reading %s: %w", p, err)
		}
		if n == 0 && len(out.Chunks) > 0 {
			return out, nil
		}
		out.Size += n
		out.Chunks = append(out.Chunks, hex.EncodeToString(h.Sum(nil)))
		if n < chunk {
			return out, nil
		}
	}
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
	switch {
	case m.Version == 1 && m.ChunkSize == 0:
	case m.Version == 2 && m.ChunkSize >= 4096 && m.ChunkSize <= 1<<30:
	case m.Version == 1 || m.Version == 2:
		return fmt.Errorf("%w: manifest version %d with chunk size %d", ErrCorrupt, m.Version, m.ChunkSize)
	default:
		return fmt.Errorf("%w: manifest version %d, this agent reads 1 to %d", ErrCorrupt, m.Version, ManifestVersion)
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
		if f.Size < 0 || !m.sumsFit(f) {
			return fmt.Errorf("%w: manifest entry for %s has a bad size or sum", ErrCorrupt, f.Path)
		}
	}
	return nil
}

// sumsFit says whether f carries the sums its manifest's version calls for, well formed.
func (m *Manifest) sumsFit(f File) bool {
	if m.Version == 1 {
		return len(f.Chunks) == 0 && isSum(f.SHA256)
	}
	if f.SHA256 != "" || len(f.Chunks) != numChunks(f.Size, m.ChunkSize) {
		return false
	}
	for _, c := range f.Chunks {
		if !isSum(c) {
			return false
		}
	}
	return true
}

// isSum says whether s is a sha256 in lower-case hex.
func isSum(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// VerifyDir checks every file under dir against its manifest: each listed file must exist with the listed size
// and sha256, and no unlisted file may be present. The error names the first file that differs.
func VerifyDir(ctx context.Context, dir string) error {
	want, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	// The files are summed the way the manifest sums them, each read once.
	got, err := buildManifest(ctx, dir, want.Version, want.ChunkSize)
	if err != nil {
		return err
	}
	have := make(map[string]Sum, len(got.Files))
	for _, f := range got.Files {
		have[f.Path] = Sum{Size: f.Size, SHA256: f.SHA256, ChunkSize: got.ChunkSize, Chunks: f.Chunks}
	}
	return matchFiles(ctx, dir, want, have, func(string) bool { return true })
}
