package archive

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// WhiteoutMode says what Extract does with OCI/docker whiteout entries
// (".wh.NAME" marks NAME of a lower layer deleted; ".wh..wh..opq" marks its
// directory opaque, hiding everything lower layers have in it).
type WhiteoutMode int

const (
	// WhiteoutsKeep writes every entry as it is. It is the zero value, for
	// a writable layer captured raw from an overlay upper directory, where
	// whiteouts already are 0/0 character devices and opaque directories
	// carry trusted.overlay.opaque.
	WhiteoutsKeep WhiteoutMode = iota

	// WhiteoutsOverlay converts whiteouts into overlayfs form: ".wh.NAME"
	// becomes a 0/0 character device NAME in the same directory, and
	// ".wh..wh..opq" sets trusted.overlay.opaque="y" on its directory. Use
	// it for each layer of a multi-layer image.
	WhiteoutsOverlay

	// WhiteoutsDrop leaves whiteout entries out. Use it when the archive is
	// a whole root filesystem with nothing below it.
	WhiteoutsDrop
)

// String names the mode.
func (m WhiteoutMode) String() string {
	switch m {
	case WhiteoutsKeep:
		return "keep"
	case WhiteoutsOverlay:
		return "overlay"
	case WhiteoutsDrop:
		return "drop"
	}
	return fmt.Sprintf("WhiteoutMode(%d)", int(m))
}

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
	overlayXattr   = "trusted.overlay."
	opaqueXattr    = "trusted.overlay.opaque"
)

// whiteout handles hdr if it is a whiteout entry and the mode is not Keep;
// handled reports whether the entry is done with.
func (x *extractor) whiteout(rel string, hdr *tar.Header) (handled bool, err error) {
	if x.opts.Whiteouts == WhiteoutsKeep {
		return false, nil
	}
	base := path.Base(rel)
	if hdr.Typeflag == tar.TypeLink && strings.HasPrefix(path.Base(hdr.Linkname), whiteoutPrefix) {
		return true, nil // a hard link to a whiteout: nothing to link to
	}
	if !strings.HasPrefix(base, whiteoutPrefix) {
		return false, nil
	}
	if x.opts.Whiteouts == WhiteoutsDrop {
		return true, nil
	}
	if err := x.root.parents(rel, true); err != nil {
		return true, err
	}
	dir := path.Dir(rel)
	switch {
	case base == opaqueMarker:
		return true, unix.Lsetxattr(x.root.abs(dir), opaqueXattr, []byte("y"), 0)
	case strings.HasPrefix(base, whiteoutMeta):
		return true, nil // other aufs bookkeeping (.wh..wh.plnk and such)
	case base == whiteoutPrefix:
		return true, fmt.Errorf("%w: whiteout %q names no file", ErrCorrupt, hdr.Name)
	}
	return true, x.whiteoutDevice(path.Join(dir, base[len(whiteoutPrefix):]), hdr)
}

// whiteoutDevice makes the 0/0 character device that overlayfs reads as a
// deleted file. If this layer already has an entry by that name, that entry
// hides the lower one by itself and stays.
func (x *extractor) whiteoutDevice(rel string, hdr *tar.Header) error {
	abs := x.root.abs(rel)
	if exists(abs) {
		return nil
	}
	if err := unix.Mknod(abs, unix.S_IFCHR, 0); err != nil {
		return err
	}
	return lchown(abs, hdr)
}

// keepXattr reports whether an extended attribute from the archive is
// restored. Outside WhiteoutsKeep, trusted.overlay.* attributes from the
// archive are dropped: they would change how overlayfs reads the layer
// (redirects, metacopy, opaque directories), and only the whiteout
// conversion above may set them.
func (x *extractor) keepXattr(name string) bool {
	return x.opts.Whiteouts == WhiteoutsKeep || !strings.HasPrefix(name, overlayXattr)
}
