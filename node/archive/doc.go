// Package archive extracts and writes tar streams of container file
// systems: image layers, root file systems, and a container's writable
// layer in a checkpoint.
//
// Extract treats its input as hostile. It never writes outside the
// destination directory and never follows a symlink while extracting;
// entries that try are refused with ErrUnsafePath, a bad or truncated
// stream fails with ErrCorrupt, and ExtractOptions bounds the bytes and
// entries it accepts (ErrTooLarge). It restores what a root file system
// needs: ownership, modes, times, devices, fifos, hard links and xattrs.
// Whiteouts are kept, dropped or converted to overlayfs form according to
// ExtractOptions.Whiteouts.
//
// Write is the other direction: a deterministic tar of a directory that
// keeps what overlayfs relies on (0/0 character devices, trusted.overlay
// xattrs), so a writable layer survives Write -> Extract(WhiteoutsKeep).
//
// Both need root to restore or read everything; both are safe to call
// from several goroutines at once on different directories.
//
// # Usage
//
// Unpacking a gzip-compressed image layer for an overlay mount:
//
//	zr, err := gzip.NewReader(f)
//	if err != nil {
//		return err
//	}
//	st, err := archive.Extract(ctx, zr, layerDir, archive.ExtractOptions{
//		Whiteouts: archive.WhiteoutsOverlay,
//		MaxBytes:  8 << 30,
//	})
//	if errors.Is(err, archive.ErrUnsafePath) {
//		// refuse the image: it tried to write outside layerDir
//	}
//	log.Info("layer unpacked", "entries", st.Entries, "bytes", st.Bytes)
//
// Capturing a writable layer and restoring it elsewhere:
//
//	_, err := archive.Write(ctx, w, upperDir, archive.WriteOptions{})
//	...
//	_, err = archive.Extract(ctx, r, newUpperDir, archive.ExtractOptions{})
package archive
