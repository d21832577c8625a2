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
//	a.Close()
//
// Directories under DataDir: images/ (the content-addressed image store), containers/NAME/ (bundle, overlay
// layers, log, shim files, container.json), checkpoints/NAME/ID/ (see package checkpoint), runc/ (runc's root).
package node
