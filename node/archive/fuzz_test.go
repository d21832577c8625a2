package archive

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtract feeds arbitrary bytes to Extract as a tar stream. Whatever
// the input, Extract must not panic, must not create anything outside its
// destination (the sibling canary stays empty), and must leave no symlink
// whose relative target climbs out.
func FuzzExtract(f *testing.F) {
	requireRoot(f)
	seeds := [][]entry{
		{dir("d/"), file("d/f", "hello"), symlink("d/s", "../d/f"), hardlink("h", "d/f")},
		{file("../x", "evil")},
		{symlink("a", "/etc"), file("a/x", "evil")},
		{symlink("a", "../.."), dir("a/b/")},
		{file("f", "x"), dir("f/"), file("f/g", "y")},
		{file(".wh.x", ""), file("d/.wh..wh..opq", ""), withXattr(dir("o/"), "trusted.overlay.opaque", "y")},
		{hardlink("h", "../../etc/passwd")},
	}
	for i, s := range seeds {
		f.Add(tarOf(f, s...), uint8(i%3))
	}
	f.Add([]byte("not a tar"), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		root, outside := sandbox(t)
		opts := ExtractOptions{
			Whiteouts:  WhiteoutMode(mode % 3),
			MaxBytes:   1 << 20,
			MaxEntries: 1000,
		}
		_, _ = Extract(context.Background(), bytes.NewReader(data), root, opts)
		requireEmpty(t, outside)
		base := filepath.Dir(root)
		if ents, _ := os.ReadDir(base); len(ents) != 2 {
			t.Fatalf("%s has %d entries, want root and outside only", base, len(ents))
		}
		checkSymlinks(t, root)
	})
}

func checkSymlinks(t *testing.T, root string) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		if !filepath.IsAbs(target) && climbsOut(filepath.ToSlash(rel), target) {
			t.Fatalf("symlink %s -> %s climbs out of the root", p, target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
