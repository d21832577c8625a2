// Package checkpoint defines a checkpoint's layout on disk and its manifest of sha256 sums.
//
// A checkpoint is a directory:
//
//	manifest.json      every other file's path, size and the sha256 of each of its pieces of ChunkSize bytes (written last)
//	container.json     the container's recorded configuration (image, layers, args, env, limits, network)
//	rootfs-diff.tar    the writable layer's changes, captured raw from the overlay upper directory
//	images/            CRIU's images, as `runc checkpoint --image-path` wrote them
//	tmpfs/KEY.tar      the files of the container's own tmpfs (/dev, /dev/shm) that the images name as external
//	                   mounts, captured by the agent while the container was frozen (absent in older checkpoints)
//	logs/              CRIU's dump.log and stats-dump (diagnostics, not covered by the manifest)
//
// Nothing in a checkpoint is used before Verify has checked every file against the manifest, and a
// checkpoint directory only appears under its final name once it is complete (see Finish).
//
// Usage:
//
//	tmp, _ := checkpoint.Begin(parentDir, id)
//	... write tmp.ImagesDir(), tmp.DiffPath(), tmp.WriteRecord(rec) ...
//	ck, err := tmp.Finish(ctx)        // hashes everything, writes manifest.json, renames into place
//	...
//	if err := ck.Verify(ctx); err != nil { /* refuse: the error names the file */ }
package checkpoint
