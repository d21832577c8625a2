// Package runtime runs containers on one node with runc: it writes OCI bundles, mounts the overlayfs root
// (image layers as the lower layers, a per-container writable upper layer), and keeps each container's
// stdout and stderr on pipes owned by a small per-container shim process, which writes them to a log file with
// timestamps. Because the shim, not the agent, owns the pipes, the agent can restart without the container
// noticing, and a container restored by CRIU is handed new pipes by runc and keeps writing to the same log.
//
// Usage:
//
//	rc := runtime.Runc{Root: "/var/lib/ferry/runc"}
//	spec := runtime.BuildSpec(runtime.SpecConfig{...})
//	_ = runtime.WriteBundle(bundleDir, spec)
//	_ = runtime.MountOverlay(lowerDirs, upper, work, rootfs)
//	res, err := runtime.StartShim(ctx, runtime.ShimConfig{Mode: runtime.ShimRun, ...})
//	...
//	_ = rc.Checkpoint(ctx, id, runtime.CheckpointOptions{ImagePath: dir, WorkPath: work})
package runtime
