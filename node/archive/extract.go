package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for the zero values of ExtractOptions' bounds.
const (
	DefaultMaxBytes   = 64 << 30  // 64 GiB of file content
	DefaultMaxEntries = 1_000_000 // tar entries
)

// ExtractOptions tunes Extract. The zero value keeps whiteouts as they are
// and applies the default bounds.
type ExtractOptions struct {
	// Whiteouts says what to do with whiteout entries; see WhiteoutMode.
	Whiteouts WhiteoutMode

	// MaxBytes bounds the total size of file content written. Zero means
	// DefaultMaxBytes.
	MaxBytes int64

	// MaxEntries bounds the number of tar entries read. Zero means
	// DefaultMaxEntries.
	MaxEntries int64
}

func (o ExtractOptions) withDefaults() ExtractOptions {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// Stats counts what Extract or Write handled.
type Stats struct {
	Entries int64 // tar entries, whiteouts and skipped entries included
	Bytes   int64 // bytes of regular file content
}

// Extract reads an uncompressed tar stream from r and recreates it under
// dir, which must exist. It never writes outside dir: entries whose names
// or hard link targets climb out, relative symlinks that point above dir,
// and entries below a symlink or a non-directory are refused with
// ErrUnsafePath. Symlinks are created but never followed. A later entry
// replaces an earlier one of the same name (a directory over a directory
// merges). Ownership, modes, times, device numbers and PAX xattrs are
// restored, which needs root.
//
// Extract stops at the tar end-of-archive marker and does not read r past
// it. It returns what it did so far along with any error; the caller
// removes dir's contents on error if it wants nothing partial. ctx is
// checked between entries and between reads.
func Extract(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (Stats, error) {
	rt, err := newRoot(dir)
	if err != nil {
		return Stats{}, err
	}
	x := &extractor{root: rt, opts: opts.withDefaults()}
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: r})
	last := "(start of archive)"
	for {
		if err := ctx.Err(); err != nil {
			return x.stats, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return x.stats, x.readError(ctx, fmt.Sprintf("after entry %q", last), err)
		}
		last = hdr.Name
		if err := x.entry(ctx, tr, hdr); err != nil {
			return x.stats, err
		}
	}
	return x.stats, x.finish()
}

// extractor is the state of one Extract call.
type extractor struct {
	root    *root
	opts    ExtractOptions
	stats   Stats
	dirTime []dirTime // applied at the end, once nothing more is written in them
}

type dirTime struct {
	abs          string
	atime, mtime time.Time
}

// readError classifies an error from the tar reader: the context's own
// error passes through, anything else means the stream is bad.
func (x *extractor) readError(ctx context.Context, where string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, where, err)
}

func (x *extractor) entry(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	x.stats.Entries++
	if x.stats.Entries > x.opts.MaxEntries {
		return fmt.Errorf("%w: more than %d entries (at %q)", ErrTooLarge, x.opts.MaxEntries, hdr.Name)
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if err := validHeader(hdr); err != nil {
		return err
	}
	if handled, err := x.whiteout(rel, hdr); handled {
		return wrapEntry(hdr, err)
	}
	if rel == "." && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: entry %q of type %q names the destination itself", ErrUnsafePath, hdr.Name, hdr.Typeflag)
	}
	if err := x.root.parents(rel, true); err != nil {
		return wrapEntry(hdr, err)
	}
	return wrapEntry(hdr, x.create(ctx, rel, tr, hdr))
}

func (x *extractor) create(ctx context.Context, rel string, tr *tar.Reader, hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(rel, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		return x.file(ctx, rel, tr, hdr)
	case tar.TypeSymlink:
		return x.symlink(rel, hdr)
	case tar.TypeLink:
		return x.hardlink(rel, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.node(rel, hdr)
	}
	return fmt.Errorf("%w: type %q", ErrUnsupported, hdr.Typeflag)
}

// wrapEntry names the entry in err unless err already does.
func wrapEntry(hdr *tar.Header, err error) error {
	if err == nil || strings.Contains(err.Error(), strconv.Quote(hdr.Name)) {
		return err
	}
	return fmt.Errorf("entry %q: %w", hdr.Name, err)
}

// validHeader refuses numbers that the system calls below would
// misread: ids that do not fit in a uid_t and device numbers that do not
// fit in 32 bits.
func validHeader(hdr *tar.Header) error {
	okID := func(id int) bool { return id >= 0 && int64(id) < math.MaxUint32 }
	okDev := func(n int64) bool { return n >= 0 && n <= math.MaxUint32 }
	if !okID(hdr.Uid) || !okID(hdr.Gid) || !okDev(hdr.Devmajor) || !okDev(hdr.Devminor) || hdr.Size < 0 {
		return fmt.Errorf("%w: entry %q has an out-of-range uid, gid, size or device number", ErrCorrupt, hdr.Name)
	}
	return nil
}

func (x *extractor) dir(rel string, hdr *tar.Header) error {
	kept, err := x.root.clear(rel, true)
	if err != nil {
		return err
	}
	abs := x.root.abs(rel)
	if rel != "." && !kept {
		if err := os.Mkdir(abs, 0o700); err != nil {
			return err
		}
	}
	x.root.markDir(rel)
	if err := x.meta(abs, hdr); err != nil {
		return err
	}
	x.dirTime = append(x.dirTime, dirTime{abs: abs, atime: hdr.AccessTime, mtime: hdr.ModTime})
	return nil
}

func (x *extractor) file(ctx context.Context, rel string, tr *tar.Reader, hdr *tar.Header) error {
	if x.stats.Bytes+hdr.Size > x.opts.MaxBytes {
		return fmt.Errorf("%w: file content over %d bytes", ErrTooLarge, x.opts.MaxBytes)
	}
	if _, err := x.root.clear(rel, false); err != nil {
		return err
	}
	abs := x.root.abs(rel)
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	w := &recordingWriter{w: f}
	n, err := io.Copy(w, tr)
	x.stats.Bytes += n
	if cerr := f.Close(); err == nil && w.err == nil {
		err = cerr
	}
	switch {
	case w.err != nil:
		return w.err
	case err != nil:
		return x.readError(ctx, "file body", err)
	}
	return x.finishNode(abs, hdr)
}

func (x *extractor) symlink(rel string, hdr *tar.Header) error {
	target := hdr.Linkname
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("%w: symlink %q has an empty or invalid target", ErrCorrupt, hdr.Name)
	}
	if !path.IsAbs(target) && climbsOut(path.Dir(rel), target) {
		return fmt.Errorf("%w: symlink %q -> %q points outside the destination", ErrUnsafePath, hdr.Name, target)
	}
	if _, err := x.root.clear(rel, false); err != nil {
		return err
	}
	abs := x.root.abs(rel)
	if err := os.Symlink(target, abs); err != nil {
		return err
	}
	return x.finishNode(abs, hdr)
}

func (x *extractor) hardlink(rel string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("%w: hard link %q -> %q points outside the destination", ErrUnsafePath, hdr.Name, hdr.Linkname)
	}
	if target == rel || target == "." {
		return fmt.Errorf("%w: hard link %q -> %q links to itself or the root", ErrCorrupt, hdr.Name, hdr.Linkname)
	}
	if err := x.root.parents(target, false); err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	tabs := x.root.abs(target)
	fi, err := os.Lstat(tabs)
	if err != nil || fi.IsDir() {
		return fmt.Errorf("%w: hard link %q -> %q: the target must be an earlier non-directory entry", ErrCorrupt, hdr.Name, hdr.Linkname)
	}
	if _, err := x.root.clear(rel, false); err != nil {
		return err
	}
	// link(2) does not follow a symlink at the target: it links the symlink.
	return os.Link(tabs, x.root.abs(rel))
}

func (x *extractor) node(rel string, hdr *tar.Header) error {
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if _, err := x.root.clear(rel, false); err != nil {
		return err
	}
	abs := x.root.abs(rel)
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknod(abs, mode, int(dev)); err != nil {
		return err
	}
	return x.finishNode(abs, hdr)
}

// finishNode applies metadata and times to a non-directory just created.
func (x *extractor) finishNode(abs string, hdr *tar.Header) error {
	if err := x.meta(abs, hdr); err != nil {
		return err
	}
	return setTimes(abs, hdr.AccessTime, hdr.ModTime)
}

// meta restores ownership, mode and xattrs, in that order: chown clears
// set-id bits, so the mode comes after it.
func (x *extractor) meta(abs string, hdr *tar.Header) error {
	if err := lchown(abs, hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := os.Chmod(abs, tarMode(hdr)); err != nil {
			return err
		}
	}
	return x.xattrs(abs, hdr)
}

func (x *extractor) xattrs(abs string, hdr *tar.Header) error {
	const prefix = "SCHILY.xattr."
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, prefix)
		if !ok || !x.keepXattr(name) {
			continue
		}
		if err := unix.Lsetxattr(abs, name, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

// finish sets directory times last, once nothing more is created in them.
func (x *extractor) finish() error {
	for i := len(x.dirTime) - 1; i >= 0; i-- {
		d := x.dirTime[i]
		if err := setTimes(d.abs, d.atime, d.mtime); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func tarMode(hdr *tar.Header) fs.FileMode {
	m := fs.FileMode(hdr.Mode & 0o777)
	if hdr.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if hdr.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if hdr.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func lchown(abs string, hdr *tar.Header) error {
	return os.Lchown(abs, hdr.Uid, hdr.Gid)
}

func setTimes(abs string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	err := unix.UtimesNanoAt(unix.AT_FDCWD, abs, ts, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return &fs.PathError{Op: "utimensat", Path: abs, Err: err}
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Sec: 0}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func exists(abs string) bool {
	_, err := os.Lstat(abs)
	return err == nil
}

// recordingWriter remembers a write error, so that a failed io.Copy can be
// told apart: a write error is the disk's, a read error is the archive's.
type recordingWriter struct {
	w   io.Writer
	err error
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// ctxReader fails reads once ctx is done, so a long file body stops too.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
