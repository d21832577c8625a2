package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// cleanName turns a tar entry name into a clean slash-separated path
// relative to the destination root; the root itself is ".". Leading slashes
// are dropped, so "/etc/x" lands at dir/etc/x. A ".." that climbs above the
// root at any point of the name is refused, even if later components would
// come back down.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: entry name %q contains a NUL byte", ErrUnsafePath, name)
	}
	rel := strings.TrimLeft(name, "/")
	if climbsOut(".", rel) {
		return "", fmt.Errorf("%w: entry %q climbs out of the destination", ErrUnsafePath, name)
	}
	return path.Clean(rel), nil
}

// climbsOut reports whether walking p lexically, component by component,
// starting in directory base (a clean relative path), ever goes above the
// root. It is how relative symlink targets and entry names are checked.
func climbsOut(base, p string) bool {
	depth := 0
	if base != "." && base != "" {
		depth = strings.Count(base, "/") + 1
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// root is the destination directory of one extraction. It remembers which
// directories below it have been checked to be real directories, so that
// each entry costs one Lstat per new parent component rather than per
// component. Only this extraction writes under root, so the cache stays
// true until the extraction itself replaces a directory (see forget).
type root struct {
	dir     string
	checked map[string]struct{}
}

func newRoot(dir string) (*root, error) {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("archive destination: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("archive destination %s is not a directory", dir)
	}
	return &root{dir: dir, checked: map[string]struct{}{}}, nil
}

// abs returns the host path of rel, a path from cleanName.
func (r *root) abs(rel string) string {
	return filepath.Join(r.dir, filepath.FromSlash(rel))
}

// parents checks that every parent directory of rel is a real directory,
// not a symlink and not another kind of file. With create set, missing
// parents are made with mode 0755; otherwise a missing parent is an error.
func (r *root) parents(rel string, create bool) error {
	parent := path.Dir(rel)
	if parent == "." {
		return nil
	}
	if _, ok := r.checked[parent]; ok {
		return nil
	}
	cur := ""
	for _, c := range strings.Split(parent, "/") {
		cur = path.Join(cur, c)
		if _, ok := r.checked[cur]; ok {
			continue
		}
		if err := r.checkDir(cur, create); err != nil {
			return err
		}
		r.checked[cur] = struct{}{}
	}
	return nil
}

func (r *root) checkDir(rel string, create bool) error {
	fi, err := os.Lstat(r.abs(rel))
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		return os.Mkdir(r.abs(rel), 0o755)
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: parent %q is a symlink", ErrUnsafePath, rel)
	case !fi.IsDir():
		return fmt.Errorf("%w: parent %q is not a directory", ErrUnsafePath, rel)
	}
	return nil
}

// forget drops rel and everything below it from the cache of checked
// directories; it is called before a directory is removed.
func (r *root) forget(rel string) {
	for k := range r.checked {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			delete(r.checked, k)
		}
	}
}

// markDir records that rel is a directory this extraction made or checked.
func (r *root) markDir(rel string) {
	r.checked[rel] = struct{}{}
}

// clear removes whatever is at rel so a new entry can take its place. An
// existing directory is kept when keepDir is set (a directory entry over a
// directory merges into it); kept reports that. Nothing is ever followed:
// a symlink at rel is removed, not its target.
func (r *root) clear(rel string, keepDir bool) (kept bool, err error) {
	abs := r.abs(rel)
	fi, err := os.Lstat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, os.Remove(abs)
	}
	if keepDir {
		return true, nil
	}
	r.forget(rel)
	return false, os.RemoveAll(abs)
}
