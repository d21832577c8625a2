package checkpoint

import (
	"context"
	"fmt"
	"path/filepath"
)

// Sum is what is known of a file's content: its size and either its whole sha256 (SHA256) or the sha256 of
// each of its pieces of ChunkSize bytes, in order (Chunks), as a transfer checked them on arrival or as they
// were read back from disk. A file that travelled as one piece has both: SHA256 and Chunks[0] are equal.
type Sum struct {
	Size      int64
	SHA256    string
	ChunkSize int64
	Chunks    []string
}

// MatchManifest checks a checkpoint directory that arrived by a transfer which already hashed every file it
// wrote (received: the sums it checked, by slash-separated path): each file the manifest lists must have
// arrived with the listed size and sums, and no other file the manifest covers may have arrived. Where the
// transfer's sums are of the same pieces as the manifest's (a version 2 manifest, sent in its ChunkSize), it
// reads only the manifest, not the files, and spares hashing the checkpoint a second time; a file whose sums
// cannot be compared (a version 1 manifest and a file sent in pieces) is read back and hashed.
func MatchManifest(ctx context.Context, dir string, received map[string]Sum) error {
	want, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	return matchFiles(ctx, dir, want, received, covered)
}

// matchFiles checks the files got (sums by slash-separated path) against the manifest want: each listed file
// present with its size and sums, and no file of got that counts unlisted. A file whose sums in got are not
// comparable with the manifest's is hashed from dir the way the manifest sums it. The error names the file.
func matchFiles(ctx context.Context, dir string, want *Manifest, got map[string]Sum, counts func(path string) bool) error {
	listed := make(map[string]bool, len(want.Files))
	buf := make([]byte, 1<<20)
	for _, f := range want.Files {
		g, ok := got[f.Path]
		switch {
		case !ok:
			return fmt.Errorf("%w: %s is missing", ErrCorrupt, f.Path)
		case g.Size != f.Size:
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, f.Path, g.Size, f.Size)
		}
		differs, comparable := want.compare(f, g)
		if !comparable {
			read, err := hashFile(ctx, filepath.Join(dir, filepath.FromSlash(f.Path)), want.ChunkSize, buf)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, f.Path, err)
			}
			if read.Size != f.Size {
				return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, f.Path, read.Size, f.Size)
			}
			g = Sum{Size: read.Size, SHA256: read.SHA256, ChunkSize: want.ChunkSize, Chunks: read.Chunks}
			differs, _ = want.compare(f, g)
		}
		if differs >= 0 {
			return want.sumError(f, g, differs)
		}
		listed[f.Path] = true
	}
	for p := range got {
		if counts(p) && !listed[p] {
			return fmt.Errorf("%w: %s is not in the manifest", ErrCorrupt, p)
		}
	}
	return nil
}

// sumError says how file f differs from its manifest entry: which sum, where.
func (m *Manifest) sumError(f File, g Sum, i int) error {
	if m.Version == 1 {
		got := g.SHA256
		if got == "" {
			got = g.Chunks[0]
		}
		return fmt.Errorf("%w: %s has sha256 %.12s…, the manifest says %.12s…", ErrCorrupt, f.Path, got, f.SHA256)
	}
	got := g.SHA256
	if i < len(g.Chunks) {
		got = g.Chunks[i]
	}
	from := int64(i) * m.ChunkSize
	to := min(from+m.ChunkSize, f.Size)
	return fmt.Errorf("%w: %s has sha256 %.12s… in bytes %d-%d, the manifest says %.12s…", ErrCorrupt, f.Path, got, from, to, f.Chunks[i])
}

// compare checks the sums g of a file (of the right size) against the manifest's entry f. It returns the
// index of the first piece that differs (0 for a whole-file sum), or -1 when all agree; comparable is false
// when g's sums are not of the pieces the manifest sums, so they prove nothing either way.
func (m *Manifest) compare(f File, g Sum) (differs int, comparable bool) {
	if m.Version == 1 {
		whole := g.SHA256
		if whole == "" && len(g.Chunks) == 1 && (g.ChunkSize == 0 || g.Size <= g.ChunkSize) {
			whole = g.Chunks[0]
		}
		if whole == "" {
			return 0, false
		}
		if whole != f.SHA256 {
			return 0, true
		}
		return -1, true
	}
	chunks := g.Chunks
	switch {
	case len(f.Chunks) == 1 && g.SHA256 != "":
		chunks = []string{g.SHA256}
	case len(f.Chunks) == 1 && len(g.Chunks) == 1:
	case g.ChunkSize != m.ChunkSize || len(g.Chunks) != len(f.Chunks):
		return 0, false
	}
	for i := range f.Chunks {
		if chunks[i] != f.Chunks[i] {
			return i, true
		}
	}
	return -1, true
}
