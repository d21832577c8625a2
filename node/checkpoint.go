package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node/archive"
	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// CheckpointOptions modify a checkpoint.
type CheckpointOptions struct {
	// LeaveRunning keeps the container running after the dump. It is frozen while CRIU dumps it and its
	// writable layer is captured, so memory and files agree.
	LeaveRunning bool `json:"leave_running,omitempty"`
}

// CheckpointReport says what a checkpoint did.
type CheckpointReport struct {
	Container    string          `json:"container"`
	Node         string          `json:"node"`
	ID           string          `json:"id"`
	LeaveRunning bool            `json:"leave_running"`
	Size         int64           `json:"size"`           // bytes in the checkpoint (images, writable layer, record)
	DiffBytes    int64           `json:"diff_bytes"`     // of which the writable layer's tar
	Files        int             `json:"files"`          // files listed in the manifest
	Took         time.Duration   `json:"took"`           // the whole operation
	Frozen       time.Duration   `json:"frozen"`         // the container was frozen (or gone) this long
	CRIU         *criu.DumpStats `json:"criu,omitempty"` // CRIU's own statistics
}

// Checkpoint dumps a running container with CRIU (through runc) into a new checkpoint: CRIU's images, the
// writable layer's changes and the recorded configuration, with a manifest of sha256 sums. Without
// LeaveRunning the container is gone afterwards (state checkpointed) until Restore. If the dump fails the
// container keeps running and nothing of the checkpoint is left.
func (a *Agent) Checkpoint(ctx context.Context, name string, opts CheckpointOptions, progress ProgressFunc) (*CheckpointReport, error) {
	e, unlock, err := a.lockForCRIU(name, "only a running container can be checkpointed", StateRunning)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ph := newPhaser(progress)
	pend, err := checkpoint.Begin(a.checkpointsDir(name), checkpoint.NewID(time.Now()))
	if err != nil {
		return nil, err
	}
	_ = e.update(func(c *Container) { c.State = StateCheckpointing })
	frozen, err := a.dump(ctx, e, pend, opts, ph)
	if err != nil {
		pend.Abort()
		a.afterFailedDump(context.WithoutCancel(ctx), e)
		return nil, err
	}
	rep, err := a.finishCheckpoint(ctx, e, pend, opts, ph)
	if err != nil {
		pend.Abort()
		a.afterFailedDump(context.WithoutCancel(ctx), e) // thawed, it goes on
		return nil, err
	}
	rep.Frozen, rep.Took = frozen, time.Since(ph.start)
	a.log.Info("checkpoint done", "container", name, "id", rep.ID, "size", rep.Size, "took", rep.Took.Round(time.Millisecond), "leave_running", opts.LeaveRunning)
	return rep, nil
}

// dump runs CRIU and captures the writable layer; it returns how long the container was frozen.
func (a *Agent) dump(ctx context.Context, e *entry, pend *checkpoint.Pending, opts CheckpointOptions, ph *phaser) (time.Duration, error) {
	c := e.snapshot()
	name := c.Config.Name
	// The container is frozen for the dump by the agent, not by CRIU, so that its own tmpfs and its writable
	// layer are captured while nothing of it runs. Without LeaveRunning it is left frozen: the caller stops it
	// (stopFrozen) once the checkpoint is complete and its manifest written, or thaws it if that fails, so
	// that a checkpoint that could not be finished (a full disk) does not cost the container.
	ro := runtime.CheckpointOptions{ImagePath: pend.ImagesDir(), WorkPath: pend.LogsDir(), LeaveRunning: true}
	start := time.Now()
	ph.phase("freezing", "")
	if err := a.pause(ctx, name); err != nil {
		return 0, fmt.Errorf("freezing %s: %w", name, err)
	}
	thaw := true
	defer func() {
		if thaw {
			_ = a.resume(context.WithoutCancel(ctx), name)
		}
	}()
	ph.phase("dumping", "CRIU dumps the container's memory and state")
	tmpfs := make(chan error, 1)
	go func() { tmpfs <- captureTmpfs(ctx, c.Pid, pend.Dir) }()
	err := a.runc.Checkpoint(ctx, name, ro)
	terr := <-tmpfs
	if err != nil {
		return 0, fmt.Errorf("CRIU could not dump %s: %w%s", name, err, criuLogErrors(filepath.Join(pend.LogsDir(), "dump.log")))
	}
	if terr != nil {
		return 0, terr
	}
	ph.phase("writable-layer", "capturing the container's file changes")
	if err := writeDiff(ctx, e.upperDir(c.Generation), pend.DiffPath()); err != nil {
		return 0, err
	}
	thaw = opts.LeaveRunning
	return time.Since(start), nil
}

// stopFrozen ends a container that a dump left frozen: the pending SIGKILL ends every process as soon as the
// cgroup thaws, before any of them runs again. If the kill fails, the container is thawed and goes on.
func (a *Agent) stopFrozen(ctx context.Context, name string) error {
	err := a.runc.Kill(ctx, name, syscall.SIGKILL, true)
	if rerr := a.resume(context.WithoutCancel(ctx), name); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("stopping %s after its dump: %w", name, err)
	}
	return nil
}

func writeDiff(ctx context.Context, upper, dest string) error {
	if err := writeTree(ctx, upper, dest, archive.WriteOptions{}); err != nil {
		return fmt.Errorf("capturing the writable layer: %w", err)
	}
	return nil
}

// writeTree archives the tree under src into a new file dest.
func writeTree(ctx context.Context, src, dest string, opts archive.WriteOptions) error {
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := archive.Write(ctx, f, src, opts); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// afterFailedDump puts the record back in line with reality: CRIU resumes a container whose dump failed.
func (a *Agent) afterFailedDump(ctx context.Context, e *entry) {
	c := e.snapshot()
	if st, err := a.runc.State(ctx, c.Config.Name); err == nil && (st.Status == "running" || st.Status == "paused") {
		if st.Status == "paused" {
			_ = a.resume(ctx, c.Config.Name)
		}
		_ = e.update(func(c *Container) { c.State = StateRunning })
		return
	}
	_ = e.update(func(c *Container) { c.State = StateRunning })
	a.finishExited(ctx, e)
}

func (a *Agent) finishCheckpoint(ctx context.Context, e *entry, pend *checkpoint.Pending, opts CheckpointOptions, ph *phaser) (*CheckpointReport, error) {
	c := e.snapshot()
	if err := pend.WriteRecord(c.Config); err != nil {
		return nil, err
	}
	a.markLazy(pend.ImagesDir(), c.Config.Name)
	ph.phase("manifest", "hashing the checkpoint's files")
	if a.cfg.Fault("break-manifest") {
		return nil, fmt.Errorf("writing the checkpoint's manifest: %w", errInjected)
	}
	ck, m, err := pend.Finish(ctx)
	if err != nil {
		return nil, err
	}
	if !opts.LeaveRunning {
		if err := a.stopFrozen(ctx, c.Config.Name); err != nil {
			_ = os.RemoveAll(ck.Dir)
			return nil, err
		}
		// Its shim ends with it.
		waitFor(ctx, c.ShimPid, 5*time.Second)
		a.release(context.WithoutCancel(ctx), e)
	}
	_ = e.update(func(c *Container) {
		c.Checkpoint = ck.ID
		if opts.LeaveRunning {
			c.State = StateRunning
		} else {
			c.State, c.Pid, c.ShimPid = StateCheckpointed, 0, 0
		}
	})
	rep := &CheckpointReport{Container: c.Config.Name, Node: a.cfg.Name, ID: ck.ID, LeaveRunning: opts.LeaveRunning,
		Size: m.Size(), Files: len(m.Files)}
	if fi, err := os.Stat(ck.DiffPath()); err == nil {
		rep.DiffBytes = fi.Size()
	}
	if st, err := criu.ReadDumpStats(ck.LogsDir()); err == nil {
		rep.CRIU = st
	}
	return rep, nil
}

// markLazy gives the processes of the CRIU images in dir that CRIU left without a lazy page (criu.MarkLazy)
// the flags of every other process, before the checkpoint's manifest is made. A failure only costs speed: a
// lazy restore of such a process copies all its memory first.
func (a *Agent) markLazy(dir, container string) {
	pids, err := criu.MarkLazy(dir)
	if err != nil {
		a.log.Warn("could not check which pages CRIU marked lazy; a lazy restore of this checkpoint may copy all of its memory first",
			"container", container, "err", err)
		return
	}
	if len(pids) > 0 {
		a.log.Info("CRIU marked no page lazy for processes with a stack pointer on a page boundary; their pagemaps now mark them as CRIU does for others",
			"container", container, "pids", pids)
	}
}

// criuLogErrors returns the last error lines of a CRIU log, to say why it failed.
func criuLogErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Error (") && !strings.Contains(l, "RLIMIT_NOFILE") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) > 3 {
		errs = errs[len(errs)-3:]
	}
	if len(errs) == 0 {
		return ""
	}
	return "; CRIU said: " + strings.Join(errs, " | ")
}

// Checkpoints lists the finished checkpoints of a container, oldest first.
func (a *Agent) Checkpoints(name string) ([]string, error) {
	if _, err := a.lookup(name); err != nil {
		return nil, err
	}
	return checkpoint.List(a.checkpointsDir(name))
}
