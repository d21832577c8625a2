package images

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// maxJSON bounds manifests, indexes and configs read from an archive.
const maxJSON = 4 << 20

// openInRoot opens the regular file rel under root for reading. Symlinks
// are followed only as long as they stay inside root (os.Root), and
// anything but a regular file is refused, so a fifo cannot block the
// import and a link cannot reach the host's files.
func openInRoot(root, rel string) (*os.File, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.OpenFile(filepath.FromSlash(rel), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadArchive, rel, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadArchive, rel)
	}
	return f, nil
}

// readJSONFile reads rel under root, refusing more than maxJSON bytes.
func readJSONFile(root, rel string) ([]byte, error) {
	f, err := openInRoot(root, rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJSON+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	if len(data) > maxJSON {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadArchive, rel, maxJSON)
	}
	return data, nil
}

// isRegularFile reports whether root/name is a regular file (not a
// symlink): how the format of an image directory is told.
func isRegularFile(root, name string) bool {
	fi, err := os.Lstat(filepath.Join(root, name))
	return err == nil && fi.Mode().IsRegular()
}
