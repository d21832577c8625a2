package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ManifestVersion is the manifest format this package writes and accepts.
const ManifestVersion = 1

// Manifest lists the files of a directory with their sizes and SHA-256
// digests. It travels as JSON at the start of every stream and is the
// reference the receiver checks each file against.
type Manifest struct {
	// Version is ManifestVersion.
	Version int `json:"version"`
	// Entries are the regular files, in the order they are sent.
	Entries []Entry `json:"entries"`
}

// Entry is one regular file of a Manifest.
type Entry struct {
	// Path is relative to the directory, with forward slashes, clean, and
	// without "." or ".." components.
	Path string `json:"path"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the file's content, or empty when the file is checked by
	// the SHA-256 of each chunk only (ListManifest: no pass over the files before sending).
	SHA256 string `json:"sha256"`
	// Mode holds the permission bits (0o777 at most); the receiver applies them.
	Mode uint32 `json:"mode"`
}

// TotalSize returns the sum of the entries' sizes.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// Encode returns the manifest as JSON. The encoding is deterministic, so equal
// manifests encode to equal bytes.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %v", ErrManifest, err)
	}
	return b, nil
}

// DecodeManifest parses JSON produced by Encode and validates it against lim.
// Unknown fields and trailing data are refused.
func DecodeManifest(data []byte, lim Limits) (*Manifest, error) {
	lim = lim.withDefaults()
	if len(data) > lim.MaxManifestBytes {
		return nil, fmt.Errorf("%w: manifest is %d bytes, limit %d", ErrTooLarge, len(data), lim.MaxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrManifest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the manifest", ErrManifest)
	}
	if err := m.Validate(lim); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the manifest against lim (zero fields: defaults): the
// version, path safety (ErrUnsafePath), duplicates and file/directory clashes
// (ErrManifest), digests (ErrManifest), and sizes and counts (ErrTooLarge).
func (m *Manifest) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if m.Version != ManifestVersion {
		return fmt.Errorf("%w: version %d, this build reads version %d; upgrade the older agent",
			ErrManifest, m.Version, ManifestVersion)
	}
	if len(m.Entries) > lim.MaxEntries {
		return fmt.Errorf("%w: %d entries, limit %d", ErrTooLarge, len(m.Entries), lim.MaxEntries)
	}
	seen := make(map[string]bool, len(m.Entries))
	var total int64
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := e.validate(lim); err != nil {
			return err
		}
		if seen[e.Path] {
			return fmt.Errorf("%w: duplicate path %q", ErrManifest, e.Path)
		}
		seen[e.Path] = true
		total += e.Size
		if total > lim.MaxTotalSize {
			return fmt.Errorf("%w: total size exceeds limit %d at %q", ErrTooLarge, lim.MaxTotalSize, e.Path)
		}
	}
	return checkDirClashes(m.Entries, seen)
}

// validate checks one entry on its own.
func (e *Entry) validate(lim Limits) error {
	if err := checkPath(e.Path, lim.MaxPathLen); err != nil {
		return err
	}
	if e.Size < 0 {
		return fmt.Errorf("%w: %q has negative size %d", ErrManifest, e.Path, e.Size)
	}
	if e.Size > lim.MaxFileSize {
		return fmt.Errorf("%w: %q is %d bytes, limit %d", ErrTooLarge, e.Path, e.Size, lim.MaxFileSize)
	}
	if e.SHA256 == "" {
		// checked per chunk only
	} else if len(e.SHA256) != 64 || strings.ToLower(e.SHA256) != e.SHA256 {
		return fmt.Errorf("%w: %q has sha256 %q, want 64 lowercase hex digits", ErrManifest, e.Path, e.SHA256)
	}
	if _, err := hex.DecodeString(e.SHA256); err != nil {
		return fmt.Errorf("%w: %q has sha256 %q, want 64 lowercase hex digits", ErrManifest, e.Path, e.SHA256)
	}
	if e.Mode&^0o777 != 0 {
		return fmt.Errorf("%w: %q has mode %#o; only permission bits 0777 are allowed", ErrManifest, e.Path, e.Mode)
	}
	return nil
}

// checkPath refuses anything but a clean, relative, forward-slash path.
func checkPath(p string, maxLen int) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("%w: empty path", ErrUnsafePath)
	case len(p) > maxLen:
		return fmt.Errorf("%w: path of %d bytes, limit %d", ErrTooLarge, len(p), maxLen)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %q contains a NUL byte", ErrUnsafePath, p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w: %q is absolute", ErrUnsafePath, p)
	case strings.Contains(p, `\`):
		return fmt.Errorf("%w: %q contains a backslash", ErrUnsafePath, p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return fmt.Errorf("%w: %q has a \"..\" component", ErrUnsafePath, p)
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("%w: %q is not clean (want %q)", ErrUnsafePath, p, path.Clean(p))
	}
	return nil
}

// checkDirClashes refuses a file that is also the parent directory of another.
func checkDirClashes(entries []Entry, files map[string]bool) error {
	for _, e := range entries {
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			if files[d] {
				return fmt.Errorf("%w: %q needs a directory where %q is a file", ErrManifest, e.Path, d)
			}
		}
	}
	return nil
}

// BuildManifest walks dir and returns a manifest of its regular files, in
// lexical order, hashing each one. A symlink is refused with ErrUnsafePath and
// a device, socket or fifo with ErrNotRegular; empty directories are not
// recorded. It reads each file once, streaming, and stops on ctx.
func BuildManifest(ctx context.Context, dir string) (*Manifest, error) {
	return walkManifest(ctx, dir, true)
}

// ListManifest is BuildManifest without the files' digests: sizes and modes only, so that sending can
// start at once. Every byte is still checked end to end, by the SHA-256 of each chunk that the sender
// takes as it reads and the receiver as it writes (and by each frame's CRC32C).
func ListManifest(ctx context.Context, dir string) (*Manifest, error) {
	return walkManifest(ctx, dir, false)
}

func walkManifest(ctx context.Context, dir string, hash bool) (*Manifest, error) {
	m := &Manifest{Version: ManifestVersion, Entries: []Entry{}}
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		e, err := hashEntry(ctx, p, rel, d, buf, hash)
		if err != nil {
			return err
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build manifest of %s: %w", dir, err)
	}
	return m, nil
}

// hashEntry checks one directory entry is a regular file and hashes it.
func hashEntry(ctx context.Context, p, rel string, d fs.DirEntry, buf []byte, hash bool) (Entry, error) {
	if d.Type()&fs.ModeSymlink != 0 {
		return Entry{}, fmt.Errorf("%w: %s is a symlink; checkpoints must hold regular files only", ErrUnsafePath, rel)
	}
	if !d.Type().IsRegular() {
		return Entry{}, fmt.Errorf("%w: %s has type %v; checkpoints must hold regular files only", ErrNotRegular, rel, d.Type())
	}
	f, err := os.Open(p)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return Entry{}, err
	}
	if !hash {
		if !info.Mode().IsRegular() {
			return Entry{}, fmt.Errorf("%w: %s changed type while listed", ErrNotRegular, rel)
		}
		return Entry{Path: rel, Size: info.Size(), Mode: uint32(info.Mode().Perm())}, nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, buf)
	if err != nil {
		return Entry{}, fmt.Errorf("hash %s: %w", rel, err)
	}
	return Entry{Path: rel, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Mode: uint32(info.Mode().Perm())}, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
