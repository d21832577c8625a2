// Package node is Ferry's node agent: it runs containers with runc on an overlayfs root, keeps their logs,
// checkpoints and restores them with CRIU, and keeps its state on disk so that a restarted agent finds its
// containers again.
//
// Usage:
//
//	cfg := node.DefaultConfig()
//	cfg.Name, cfg.DataDir = "vg-1", "/var/lib/ferry"
//	a, err := node.New(ctx, cfg)      // probes CRIU, opens the image store, re-attaches to running containers
//	...
//	c, err := a.Run(ctx, node.RunRequest{Name: "np", Image: "busybox", Args: []string{"sh", "-c", "..."}})
//	rep, err := a.Checkpoint(ctx, "np", node.CheckpointOptions{}, progress)
//	rep2, err := a.Restore(ctx, "np", node.RestoreOptions{}, progress)
//	sn, err := a.Snapshot(ctx, "np", node.SnapshotOptions{}, progress) // np goes on running
//	cl, err := a.Clone(ctx, sn.ID, "np-copy", progress)                // a new container from the snapshot
//	ld, err := a.LoadSnapshot(ctx, "np", sn.ID, progress)              // np back to the snapshot's moment
//	a.Close()
//
// Directories under DataDir: images/ (the content-addressed image store), containers/NAME/ (bundle, overlay
// layers, log, shim files, container.json), checkpoints/NAME/ID/ (see package checkpoint), snapshots/ID/ (the
// same layout, kept apart from their container so that removing it keeps them), runc/ (runc's root).
package node
