// Package images is the node's content-addressed image store and its
// importers.
//
// An image is a list of layers, bottom first, and the little of its config
// the runtime needs (env, entrypoint, cmd, working directory, user). Each
// layer is stored once, extracted, under the sha256 of its uncompressed tar
// (its OCI diffID), with whiteouts in overlayfs form, so that a container's
// root file system is an overlay mount of LayerDirs as lowerdir. Images
// sharing a layer share its directory.
//
// Import reads root file system tarballs (plain, gzip, zstd) and
// directories, `docker save` archives and directories, and OCI image
// layouts and their tars. Everything in them is distrusted: tar entries are
// extracted by package archive (no traversal, bounded), blobs and layers
// are checked against their digests, JSON documents are read with a bound,
// and an import that fails leaves nothing behind.
//
// Layers of docker and OCI images are extracted with whiteouts converted
// (archive.WhiteoutsOverlay); a root file system tarball or directory is
// one layer with whiteouts dropped. A layer is keyed by its diffID alone,
// so in the odd case of one tar imported both ways, the first import's
// form is the one kept. The store does not collect unused layers.
//
// # Usage
//
//	store, err := images.Open("/var/lib/ferry/images", logger)
//	if err != nil {
//		return err
//	}
//	img, err := store.Import(ctx, "numbers:v1", "/tmp/numbers.tar.gz", func(done int64) {
//		fmt.Printf("\r%d MiB read", done>>20)
//	})
//	switch {
//	case errors.Is(err, images.ErrInvalidName):
//		// tell the user the naming rule (the error says it)
//	case errors.Is(err, images.ErrBadArchive):
//		// the archive was refused; the error names the entry or blob
//	case err != nil:
//		return err
//	}
//	lower, err := store.LayerDirs(img) // top first
//	if err != nil {
//		return err
//	}
//	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
//	err = unix.Mount("overlay", rootfs, "overlay", 0, opts)
package images
