package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// defaultXattrPrefixes are the extended attributes Write records when
// WriteOptions.XattrPrefixes is nil: overlayfs' own (opaque directories,
// redirects), user attributes and file capabilities.
var defaultXattrPrefixes = []string{"trusted.overlay.", "user.", "security.capability"}

// WriteOptions tunes Write. The zero value is ready to use.
type WriteOptions struct {
	// XattrPrefixes selects the extended attributes recorded, by name
	// prefix. Nil means trusted.overlay.*, user.* and security.capability;
	// an empty non-nil slice records none.
	XattrPrefixes []string

	// OneFileSystem keeps the walk on dir's file system: a directory that is the mount point of another
	// is recorded (as the mounted root's directory) but not entered, as tar's --one-file-system.
	OneFileSystem bool
}

// Write writes the tree under dir to w as a tar stream, dir itself first
// as "./". The walk is sorted by name, so the same tree gives the same
// bytes. Symlinks are recorded, never followed; character and block
// devices, fifos, modes, ownership, nanosecond mtimes and the selected
// xattrs (as PAX SCHILY.xattr records) are kept, so overlay whiteouts and
// opaque directories survive. A second path to an inode already written
// becomes a hard link entry. Sockets are skipped. Write -> Extract with
// WhiteoutsKeep reproduces the tree.
func Write(ctx context.Context, w io.Writer, dir string, opts WriteOptions) (Stats, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return Stats{}, fmt.Errorf("archive source: %w", err)
	}
	if !fi.IsDir() {
		return Stats{}, fmt.Errorf("archive source %s is not a directory", dir)
	}
	wr := &writer{
		tw:       tar.NewWriter(w),
		prefixes: opts.XattrPrefixes,
		links:    map[fileID]string{},
	}
	if wr.prefixes == nil {
		wr.prefixes = defaultXattrPrefixes
	}
	var rootDev uint64
	if opts.OneFileSystem {
		var st unix.Stat_t
		if err := unix.Lstat(dir, &st); err != nil {
			return Stats{}, &fs.PathError{Op: "lstat", Path: dir, Err: err}
		}
		rootDev = st.Dev
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if err := wr.add(p, filepath.ToSlash(rel)); err != nil {
			return err
		}
		if opts.OneFileSystem && d.IsDir() && p != dir {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return &fs.PathError{Op: "lstat", Path: p, Err: err}
			}
			if st.Dev != rootDev {
				return fs.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return wr.stats, err
	}
	return wr.stats, wr.tw.Close()
}

type fileID struct{ dev, ino uint64 }

// writer is the state of one Write call.
type writer struct {
	tw       *tar.Writer
	prefixes []string
	links    map[fileID]string // first name written for each multiply-linked inode
	stats    Stats
}

func (wr *writer) add(abs, rel string) error {
	hdr, err := wr.header(abs, rel)
	if err != nil || hdr == nil {
		return err
	}
	if err := wr.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write header of %s: %w", rel, err)
	}
	wr.stats.Entries++
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	return wr.body(abs, hdr)
}

// header builds the tar header of abs; nil means skip it (a socket).
func (wr *writer) header(abs, rel string) (*tar.Header, error) {
	var st unix.Stat_t
	if err := unix.Lstat(abs, &st); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: abs, Err: err}
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	if err := wr.setType(hdr, abs, &st); err != nil || hdr.Typeflag == 0 {
		return nil, err
	}
	xattrs, err := readXattrs(abs, wr.prefixes)
	if err != nil {
		return nil, err
	}
	for k, v := range xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = v
	}
	return hdr, nil
}

func (wr *writer) setType(hdr *tar.Header, abs string, st *unix.Stat_t) error {
	ft := st.Mode & unix.S_IFMT
	if ft != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{dev: st.Dev, ino: st.Ino}
		if first, ok := wr.links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return nil
		}
		wr.links[id] = hdr.Name
	}
	switch ft {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/" // the root, ".", becomes "./"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFLNK:
		target, err := os.Readlink(abs)
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return err
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if ft == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	}
	return nil // sockets keep Typeflag 0 and are skipped
}

func (wr *writer) body(abs string, hdr *tar.Header) error {
	f, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyN(wr.tw, f, hdr.Size)
	wr.stats.Bytes += n
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s shrank while being archived (%d of %d bytes); stop what writes to it and retry", abs, n, hdr.Size)
	}
	return err
}

// readXattrs returns the extended attributes of abs (not following a
// symlink) whose names start with one of prefixes.
func readXattrs(abs string, prefixes []string) (map[string]string, error) {
	if len(prefixes) == 0 {
		return nil, nil
	}
	names, err := xattrNames(abs)
	if err != nil {
		return nil, err
	}
	var out map[string]string
	for _, name := range names {
		if !hasAnyPrefix(name, prefixes) {
			continue
		}
		v, err := xattrValue(abs, name)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getxattr " + name, Path: abs, Err: err}
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(v)
	}
	return out, nil
}

func xattrNames(abs string) ([]string, error) {
	buf, err := growRead(func(b []byte) (int, error) { return unix.Llistxattr(abs, b) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: abs, Err: err}
	}
	var names []string
	for _, n := range strings.Split(string(buf), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

func xattrValue(abs, name string) ([]byte, error) {
	return growRead(func(b []byte) (int, error) { return unix.Lgetxattr(abs, name, b) })
}

// growRead calls a size-then-fill system call pair (listxattr, getxattr),
// retrying if the value grows in between.
func growRead(call func([]byte) (int, error)) ([]byte, error) {
	for range 8 {
		n, err := call(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		n, err = call(buf)
		if errors.Is(err, syscall.ERANGE) {
			continue
		}
		return buf[:n], err
	}
	return nil, syscall.ERANGE
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
