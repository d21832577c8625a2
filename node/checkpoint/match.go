package checkpoint

import (
	"fmt"
)

// Sum is a file's size and sha256 as a transfer checked them on arrival.
type Sum struct {
	Size   int64
	SHA256 string
}

// MatchManifest checks a checkpoint directory that arrived by a transfer which already hashed every file it
// wrote (received: the sums it checked, by slash-separated path): each file the manifest lists must have
// arrived with the listed size and sum, and no other file the manifest covers may have arrived. It reads
// only the manifest, not the files: it spares hashing the checkpoint a second time.
func MatchManifest(dir string, received map[string]Sum) error {
	want, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	return matchFiles(want, received, covered)
}

// matchFiles checks the files got (sums by slash-separated path) against the manifest want: each listed file
// present with its size and sum, and no file of got that counts unlisted. The error names the file.
func matchFiles(want *Manifest, got map[string]Sum, counts func(path string) bool) error {
	listed := make(map[string]bool, len(want.Files))
	for _, f := range want.Files {
		g, ok := got[f.Path]
		switch {
		case !ok:
			return fmt.Errorf("%w: %s is missing", ErrCorrupt, f.Path)
		case g.Size != f.Size:
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, f.Path, g.Size, f.Size)
		case g.SHA256 != f.SHA256:
			return fmt.Errorf("%w: %s has sha256 %.12s…, the manifest says %.12s…", ErrCorrupt, f.Path, g.SHA256, f.SHA256)
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
