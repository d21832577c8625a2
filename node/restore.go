package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node/archive"
	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// RestoreOptions modify a restore.
type RestoreOptions struct {
	// Checkpoint names the checkpoint; empty means the container's latest.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// RestoreReport says what a restore did.
type RestoreReport struct {
	Container  string             `json:"container"`
	Node       string             `json:"node"`
	Checkpoint string             `json:"checkpoint"`
	Pid        int                `json:"pid"`
	Verify     time.Duration      `json:"verify"` // checking the manifest
	Took       time.Duration      `json:"took"`   // the whole operation
	CRIU       *criu.RestoreStats `json:"criu,omitempty"`
}

// Restore brings a container that is not running back from a checkpoint: its memory, its writable layer and
// its recorded configuration. Every file is checked against the checkpoint's manifest before anything is
// used; a checkpoint that does not match is refused and the container is left as it was. If CRIU fails, the
// container is left checkpointed, with its old writable layer, and the error carries CRIU's reason.
func (a *Agent) Restore(ctx context.Context, name string, opts RestoreOptions, progress ProgressFunc) (*RestoreReport, error) {
	e, unlock, err := a.lockForCRIU(name, "only a container that is not running can be restored (checkpoint or stop it first)",
		StateCheckpointed, StateExited, StateStopped, StateCreated)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c := e.snapshot()
	ph := newPhaser(progress)
	ck, err := a.openCheckpoint(name, opts.Checkpoint, c.Checkpoint)
	if err != nil {
		return nil, err
	}
	ph.phase("verifying", "checking every file against the manifest")
	if err := ck.Verify(ctx); err != nil {
		return nil, fmt.Errorf("%w: refusing to restore %s from checkpoint %s: %v; the container was not touched", ErrRejected, name, ck.ID, err)
	}
	verify := time.Since(ph.start)
	var rec ContainerConfig
	if err := ck.ReadRecord(&rec); err != nil {
		return nil, fmt.Errorf("reading the recorded configuration of checkpoint %s: %w", ck.ID, err)
	}
	if rec.Name != name {
		return nil, fmt.Errorf("%w: checkpoint %s belongs to container %q, not %q", ErrInvalid, ck.ID, rec.Name, name)
	}
	pid, err := a.restoreFrom(ctx, e, ck, rec, nil, nil, 0, ph)
	if err != nil {
		return nil, err
	}
	rep := &RestoreReport{Container: name, Node: a.cfg.Name, Checkpoint: ck.ID, Pid: pid, Verify: verify, Took: time.Since(ph.start)}
	rep.CRIU, _ = criu.ReadRestoreStats(a.restoreWork(e))
	a.log.Info("restore done", "container", name, "checkpoint", ck.ID, "took", rep.Took.Round(time.Millisecond))
	return rep, nil
}

func (a *Agent) openCheckpoint(name, want, latest string) (*checkpoint.Checkpoint, error) {
	id := want
	if id == "" {
		id = latest
	}
	if id == "" {
		ids, err := checkpoint.List(a.checkpointsDir(name))
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%w: container %s has no checkpoint; make one with ferry checkpoint %s", ErrNotFound, name, name)
		}
		id = ids[len(ids)-1]
	}
	ck, err := checkpoint.Open(a.checkpointsDir(name), id)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return nil, fmt.Errorf("%w: container %s has no checkpoint %q", ErrNotFound, name, id)
	}
	return ck, err
}

func (a *Agent) restoreWork(e *entry) string { return filepath.Join(e.dir, "restore-work") }

// restoreFrom builds the next generation of the writable layer from the checkpoint and has a shim restore the
// container into it. On failure the record and the old layer are as they were. Holds e.op.
//
// With lazy (not nil), the container starts before its memory is in place: the lazy-pages daemon that lazy
// starts (or hands over) serves its page faults from the checkpoint's images and copies the rest in the
// background (the checkpoint is local).
// shim, if not nil, is a shim parked for this restore (see runtime.ParkShim). hold, for a lazy restore, is how
// long its daemon serves only the container's faults before it copies the rest in (criu.LazyRelay; 0: at once).
func (a *Agent) restoreFrom(ctx context.Context, e *entry, ck *checkpoint.Checkpoint, rec ContainerConfig, lazy lazyStart, shim *runtime.ParkedShim, hold time.Duration, ph *phaser) (int, error) {
	old := e.snapshot()
	gen := old.Generation + 1
	_ = os.RemoveAll(e.genDir(gen))
	t0 := time.Now()
	ph.phase("preparing", "unpacking the writable layer")
	work := a.restoreWork(e)
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o700); err != nil {
		return 0, err
	}
	// The lazy-pages daemon starts (a process, then its socket) while the writable layer unpacks.
	type started struct {
		lp   *criu.LazyPages
		shim *runtime.ParkedShim
		err  error
	}
	lpc := make(chan started, 1)
	if lazy != nil {
		go func() {
			lp, shim, err := lazy(ctx, work)
			lpc <- started{lp, shim, err}
		}()
	} else {
		lpc <- started{}
	}
	uerr := unpackDiff(ctx, ck.DiffPath(), e.upperDir(gen))
	st := <-lpc
	lp := st.lp
	if shim == nil {
		shim = st.shim
	} else {
		st.shim.Discard()
	}
	if err := errors.Join(uerr, st.err); err != nil {
		lp.Stop()
		st.shim.Discard()
		_ = os.RemoveAll(e.genDir(gen))
		return 0, err
	}
	t1 := time.Now()
	_ = e.update(func(c *Container) { c.Config, c.Generation, c.State = rec, gen, StateRestoring })
	ph.phase("restoring", "CRIU restores the container")
	err := prepareTmpfs(ctx, e, ck.Dir)
	if err == nil {
		sc := runtime.ShimConfig{Mode: runtime.ShimRestore, ImagePath: ck.ImagesDir(), WorkPath: work, LazyPages: lazy != nil, Parked: shim}
		if lp != nil && hold > 0 {
			// The shim holds the background copy back (criu.LazyRelay).
			sc.LazyDaemon, err = lp.DetachSocket()
			sc.LazyHold = hold
		}
		if err == nil {
			err = a.start(ctx, e, sc)
		} else {
			shim.Discard()
		}
		// The restored container holds its own references to them (CRIU bound them in).
		if uerr := runtime.UnmountOwnTmpfs(e.tmpfsDir()); uerr != nil {
			a.log.Warn("could not unmount a restore's tmpfs", "container", rec.Name, "err", uerr)
		}
	} else {
		shim.Discard()
	}
	if err != nil {
		lp.Stop()
		shim.Discard() // if a.start failed before handing it its container (nothing once it was used)
		_ = e.update(func(c *Container) { c.Config, c.Generation, c.State = old.Config, old.Generation, old.State })
		_ = os.RemoveAll(e.genDir(gen))
		return 0, fmt.Errorf("CRIU could not restore %s from checkpoint %s: %w%s; the container is left %s",
			rec.Name, ck.ID, err, criuLogErrors(filepath.Join(work, "restore.log")), old.State)
	}
	a.log.Debug("restore timings", "container", rec.Name, "prepare", t1.Sub(t0).Round(time.Millisecond),
		"restore", time.Since(t1).Round(time.Millisecond), "lazy", lazy != nil)
	_ = os.RemoveAll(e.genDir(old.Generation))
	var ld *LazyDaemon
	if lp != nil {
		lowerWhenFilling(lp, hold)
		ld = lazyDaemonOf(lp)
	}
	// One write of the record for both: it is on the way to the container's first answers.
	_ = e.update(func(c *Container) { c.Checkpoint, c.Lazy = ck.ID, ld; c.Restores++ })
	if lp != nil {
		a.wg.Add(1)
		restored := e.snapshot()
		go func() { // the daemon ends when every page is in; say so if it did not
			defer a.wg.Done()
			// However long the copy takes (an agent that ends leaves it to the daemon, which runs on, and to
			// the next agent, which adopts it: adoptLazy).
			err := lp.Wait(a.ctx)
			switch {
			case err == nil:
				a.lazyDone(e, restored)
			case a.ctx.Err() == nil:
				a.log.Error("lazy restore did not complete", "container", rec.Name, "err", err)
				a.lazyFailed(e, restored, err)
			}
		}()
	}
	if rec.Net != runtime.NetHost {
		if err := runtime.LoopbackUp(e.snapshot().Pid); err != nil {
			a.log.Warn("could not set the restored container's loopback up", "container", rec.Name, "err", err)
		}
	}
	return e.snapshot().Pid, nil
}

// lowerWhenFilling lowers lp to lazyNice once it copies the rest of the memory in the background: after hold
// (the restore's lazy hold), at once without one.
func lowerWhenFilling(lp *criu.LazyPages, hold time.Duration) {
	if hold <= 0 {
		_ = lp.SetNice(lazyNice)
		return
	}
	time.AfterFunc(hold, func() {
		if !lp.Exited() {
			_ = lp.SetNice(lazyNice)
		}
	})
}

// lazyFailed stops a container whose lazy-pages daemon ended before every page of its memory was in (it was
// killed, or its shim, which relays its socket, died while holding it back): the pages it did not copy would
// read as zeros, and a container must not run on such memory. The container's record says why. Nothing is
// done if the container is no longer the one restored (it exited, was removed or restored again).
func (a *Agent) lazyFailed(e *entry, restored Container, cause error) {
	now := e.snapshot()
	if now.State != StateRunning || now.Pid != restored.Pid || now.Generation != restored.Generation || now.Pid <= 0 {
		return
	}
	why := fmt.Sprintf("stopped: its memory was still being restored when CRIU's lazy-pages daemon ended (%v); start it again from a snapshot", cause)
	_ = e.update(func(c *Container) { c.Note, c.Lazy = why, nil })
	if err := syscall.Kill(now.Pid, syscall.SIGKILL); err != nil {
		a.log.Warn("could not stop a container whose lazy restore failed", "container", now.Config.Name, "err", err)
		return
	}
	a.log.Error("stopped a container whose lazy restore failed", "container", now.Config.Name, "pid", now.Pid)
}

func unpackDiff(ctx context.Context, tarPath, upper string) error {
	if err := os.MkdirAll(upper, 0o755); err != nil {
		return err
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := archive.Extract(ctx, f, upper, archive.ExtractOptions{Whiteouts: archive.WhiteoutsKeep}); err != nil {
		return fmt.Errorf("unpacking the writable layer: %w", err)
	}
	return nil
}
