package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// A snapshot is a checkpoint kept apart from its container: in the node's snapshots directory by ID (the same
// layout and manifest as a checkpoint: CRIU's images, the writable layer's changes and the recorded
// configuration), so that removing the container does not remove it and that other nodes can hold copies of
// it under the same ID. A snapshot's files are never changed once it is finished.

// SnapshotOptions modify a snapshot.
type SnapshotOptions struct {
	// ID names the snapshot; empty: a new one (checkpoint.NewID). The cluster gives one so that every copy
	// of a snapshot has the same ID.
	ID string `json:"id,omitempty"`
	// Stop leaves the container stopped after the dump; by default it is frozen only for the dump and goes on.
	Stop bool `json:"stop,omitempty"`
	// Template says that clones will be made of the snapshot: the node keeps a lazy-pages daemon ready for it.
	Template bool `json:"template,omitempty"`
	// Record, with Stop, is kept beside the snapshot until ClearPendingRecord: the cluster's record of it, to
	// be written again should its first write fail. It is written before the container is stopped, so a
	// snapshot that is all that is left of a container always says how to record it.
	Record []byte `json:"-"`
}

// SnapshotReport says what a snapshot did.
type SnapshotReport struct {
	ID        string          `json:"id"`
	Container string          `json:"container"`
	Node      string          `json:"node"`
	Stopped   bool            `json:"stopped"`
	Size      int64           `json:"size"`       // bytes in the snapshot (images, writable layer, record)
	DiffBytes int64           `json:"diff_bytes"` // of which the writable layer's tar
	Files     int             `json:"files"`
	Created   time.Time       `json:"created"`
	Took      time.Duration   `json:"took"`
	Frozen    time.Duration   `json:"frozen"`
	CRIU      *criu.DumpStats `json:"criu,omitempty"`
}

// verifiedSet remembers the snapshots whose files were checked against their manifest since this agent
// started (or that it wrote itself), so that a burst of clones does not hash the same images again each time.
// A load always checks again.
type verifiedSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (v *verifiedSet) has(id string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[id]
}

func (v *verifiedSet) set(id string, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]bool{}
	}
	if ok {
		v.m[id] = true
	} else {
		delete(v.m, id)
	}
}

// snapshotsDir holds the node's snapshots, by ID.
func (a *Agent) snapshotsDir() string { return filepath.Join(a.cfg.DataDir, "snapshots") }

// SnapshotDir is where snapshot id's files are (whether or not it exists).
func (a *Agent) SnapshotDir(id string) string { return filepath.Join(a.snapshotsDir(), id) }

// OpenSnapshot returns the finished snapshot id on this node.
func (a *Agent) OpenSnapshot(id string) (*checkpoint.Checkpoint, error) {
	ck, err := checkpoint.Open(a.snapshotsDir(), id)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return nil, fmt.Errorf("%w: node %s holds no snapshot %q (ferry snapshot ls says where its copies are)", ErrNotFound, a.cfg.Name, id)
	}
	return ck, err
}

// HasSnapshot reports whether this node holds a finished copy of snapshot id.
func (a *Agent) HasSnapshot(id string) bool {
	_, err := a.OpenSnapshot(id)
	return err == nil
}

// Snapshots lists the IDs of the snapshots this node holds, oldest first.
func (a *Agent) Snapshots() ([]string, error) { return checkpoint.List(a.snapshotsDir()) }

// Snapshot dumps a running container into a new snapshot. The container is frozen while CRIU dumps it and
// its writable layer is captured, so memory and files agree; then it goes on, or, with Stop, it is left
// stopped. If the dump fails the container keeps running and nothing of the snapshot is left.
func (a *Agent) Snapshot(ctx context.Context, name string, opts SnapshotOptions, progress ProgressFunc) (*SnapshotReport, error) {
	if opts.ID == "" {
		opts.ID = checkpoint.NewID(time.Now())
	}
	if !checkpoint.ValidID(opts.ID) {
		return nil, fmt.Errorf("%w: snapshot id %q", ErrInvalid, opts.ID)
	}
	if a.HasSnapshot(opts.ID) {
		return nil, fmt.Errorf("%w: node %s already holds snapshot %s", ErrExists, a.cfg.Name, opts.ID)
	}
	e, unlock, err := a.lockForCRIU(name, "only a running container can be snapshotted", StateRunning)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ph := newPhaser(progress)
	pend, err := checkpoint.Begin(a.snapshotsDir(), opts.ID)
	if err != nil {
		return nil, err
	}
	_ = e.update(func(c *Container) { c.State = StateCheckpointing })
	frozen, err := a.dump(ctx, e, pend, CheckpointOptions{LeaveRunning: !opts.Stop}, ph)
	if err != nil {
		pend.Abort()
		a.afterFailedDump(context.WithoutCancel(ctx), e)
		return nil, err
	}
	c := e.snapshot()
	err = pend.WriteRecord(c.Config)
	var ck *checkpoint.Checkpoint
	var m *checkpoint.Manifest
	if err == nil {
		ph.phase("manifest", "hashing the snapshot's files")
		if a.cfg.Fault("break-manifest") {
			err = fmt.Errorf("writing the snapshot's manifest: %w", errInjected)
		} else {
			ck, m, err = pend.Finish(ctx)
		}
	}
	if err != nil {
		// With Stop it is still frozen: thawed, it goes on, and no snapshot is left.
		pend.Abort()
		a.afterFailedDump(context.WithoutCancel(ctx), e)
		return nil, err
	}
	if opts.Stop && opts.Record != nil {
		if err := runtime.WriteFileAtomic(a.pendingRecordPath(ck.ID), opts.Record, 0o600); err != nil {
			_ = os.RemoveAll(ck.Dir)
			a.afterFailedDump(context.WithoutCancel(ctx), e)
			return nil, fmt.Errorf("keeping the snapshot's record: %w", err)
		}
	}
	if opts.Stop {
		if err := a.stopFrozen(ctx, name); err != nil {
			a.ClearPendingRecord(ck.ID)
			_ = os.RemoveAll(ck.Dir)
			a.afterFailedDump(context.WithoutCancel(ctx), e)
			return nil, err
		}
	}
	a.afterSnapshot(context.WithoutCancel(ctx), e, opts.Stop)
	a.verified.set(ck.ID, true)
	if opts.Template && a.lazyOK() {
		a.spares.prepare(ck)
		ph.phase("spares", "starting a lazy-pages daemon for the template's first clone")
		wctx, cancel := context.WithTimeout(ctx, spareWait)
		a.spares.awaitSpare(wctx, ck.ID)
		cancel()
	}
	rep := &SnapshotReport{ID: ck.ID, Container: name, Node: a.cfg.Name, Stopped: opts.Stop, Size: m.Size(), Files: len(m.Files),
		Created: m.Created, Frozen: frozen, Took: time.Since(ph.start)}
	if fi, err := os.Stat(ck.DiffPath()); err == nil {
		rep.DiffBytes = fi.Size()
	}
	rep.CRIU, _ = criu.ReadDumpStats(ck.LogsDir())
	a.log.Info("snapshot taken", "container", name, "id", ck.ID, "size", rep.Size, "took", rep.Took.Round(time.Millisecond), "stopped", opts.Stop)
	return rep, nil
}

// afterSnapshot records how the container is after its dump: running on, or stopped (CRIU ended it).
func (a *Agent) afterSnapshot(ctx context.Context, e *entry, stopped bool) {
	if !stopped {
		_ = e.update(func(c *Container) { c.State = StateRunning })
		return
	}
	c := e.snapshot()
	waitFor(ctx, c.ShimPid, 5*time.Second)
	a.release(ctx, e)
	_ = e.update(func(c *Container) {
		c.State, c.Pid, c.ShimPid, c.FinishedAt = StateStopped, 0, 0, time.Now()
	})
}

// verifySnapshot checks a snapshot's files against its manifest; with cached, a snapshot checked before by
// this agent is not hashed again.
func (a *Agent) verifySnapshot(ctx context.Context, ck *checkpoint.Checkpoint, cached bool) error {
	if cached && a.verified.has(ck.ID) {
		return nil
	}
	err := ck.Verify(ctx)
	a.verified.set(ck.ID, err == nil)
	return err
}

// VerifySnapshot checks every file of snapshot id against its manifest.
func (a *Agent) VerifySnapshot(ctx context.Context, id string) error {
	ck, err := a.OpenSnapshot(id)
	if err != nil {
		return err
	}
	if err := a.verifySnapshot(ctx, ck, false); err != nil {
		return fmt.Errorf("%w: snapshot %s on node %s: %v", ErrRejected, id, a.cfg.Name, err)
	}
	return nil
}

// AcceptSnapshot takes a received copy of snapshot id (a directory in the snapshot layout, on the same
// filesystem as the data dir) into the node's snapshots, after checking every file against its manifest:
// by hashing the files, or, when received is not nil, by comparing the manifest with the sums the transfer
// checked as it wrote them. A copy that does not match is refused and removed; a copy already held is kept
// and the new one dropped.
func (a *Agent) AcceptSnapshot(ctx context.Context, id, dir string, received map[string]checkpoint.Sum) error {
	defer os.RemoveAll(dir)
	if !checkpoint.ValidID(id) {
		return fmt.Errorf("%w: snapshot id %q", ErrInvalid, id)
	}
	if a.HasSnapshot(id) {
		return nil
	}
	check := func() error { return checkpoint.VerifyDir(ctx, dir) }
	if received != nil {
		check = func() error { return checkpoint.MatchManifest(ctx, dir, received) }
	}
	if err := check(); err != nil {
		return fmt.Errorf("%w: the copy of snapshot %s does not match its manifest: %v", ErrRejected, id, err)
	}
	if m, err := checkpoint.ReadManifest(dir); err != nil || m.ID != id {
		return fmt.Errorf("%w: the copy's manifest is not for snapshot %s", ErrRejected, id)
	}
	if err := os.MkdirAll(a.snapshotsDir(), 0o700); err != nil {
		return err
	}
	if err := os.Rename(dir, a.SnapshotDir(id)); err != nil {
		if a.HasSnapshot(id) {
			return nil // another copy arrived at the same time
		}
		return fmt.Errorf("moving the copy of snapshot %s into place: %w", id, err)
	}
	a.verified.set(id, true)
	a.arrived.signal()
	a.log.Info("snapshot copy accepted", "id", id)
	return nil
}

// RemoveSnapshot deletes this node's copy of snapshot id; removing a snapshot the node does not hold is not
// an error.
func (a *Agent) RemoveSnapshot(id string) error {
	if !checkpoint.ValidID(id) {
		return fmt.Errorf("%w: snapshot id %q", ErrInvalid, id)
	}
	a.verified.set(id, false)
	a.spares.drop(id)
	if err := os.RemoveAll(a.SnapshotDir(id)); err != nil {
		return fmt.Errorf("removing snapshot %s: %w", id, err)
	}
	a.ClearPendingRecord(id)
	return nil
}

// LoadSnapshot takes container name back to the moment of snapshot id: memory, writable layer and recorded
// configuration; what came after is gone. Every file of the snapshot is checked against its manifest first;
// a snapshot that does not match is refused and the container is not touched. Then the container, if it
// runs, is killed, and it is restored from the snapshot. If the node has no container of that name (it ran on
// a node that is gone), it is created from the snapshot's record. If CRIU fails, the container is left stopped.
func (a *Agent) LoadSnapshot(ctx context.Context, name, id string, progress ProgressFunc) (*RestoreReport, error) {
	if err := a.criuReady(); err != nil {
		return nil, err
	}
	ck, err := a.OpenSnapshot(id)
	if err != nil {
		return nil, err
	}
	ph := newPhaser(progress)
	ph.phase("verifying", "checking every file against the manifest")
	if err := a.verifySnapshot(ctx, ck, false); err != nil {
		return nil, fmt.Errorf("%w: refusing to load snapshot %s into %s: %v; the container was not touched", ErrRejected, id, name, err)
	}
	verify := time.Since(ph.start)
	rec, err := a.snapshotRecord(ck)
	if err != nil {
		return nil, err
	}
	if rec.Name != name {
		return nil, fmt.Errorf("%w: snapshot %s is of container %q, not %q", ErrInvalid, id, rec.Name, name)
	}
	e, created, err := a.entryFor(rec)
	if err != nil {
		return nil, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if err := a.endForLoad(ctx, e); err != nil {
		return nil, err
	}
	pid, err := a.restoreFrom(ctx, e, ck, rec, a.freshLazy(ck), nil, a.lazyHold(), ph)
	if err != nil {
		if created {
			a.forget(e)
		}
		return nil, err
	}
	_ = e.update(func(c *Container) { c.Checkpoint = "" })
	rep := &RestoreReport{Container: name, Node: a.cfg.Name, Checkpoint: id, Pid: pid, Verify: verify, Took: time.Since(ph.start)}
	rep.CRIU, _ = criu.ReadRestoreStats(a.restoreWork(e))
	a.log.Info("snapshot loaded", "container", name, "snapshot", id, "took", rep.Took.Round(time.Millisecond))
	return rep, nil
}

// snapshotRecord reads a snapshot's recorded configuration and checks that its image's layers are here.
func (a *Agent) snapshotRecord(ck *checkpoint.Checkpoint) (ContainerConfig, error) {
	var rec ContainerConfig
	if err := ck.ReadRecord(&rec); err != nil {
		return rec, fmt.Errorf("reading the recorded configuration of snapshot %s: %w", ck.ID, err)
	}
	if _, err := a.layerDirs(rec); err != nil {
		return rec, err
	}
	return rec, nil
}

// entryFor returns the container's entry, registering it from rec when the node has none.
func (a *Agent) entryFor(rec ContainerConfig) (*entry, bool, error) {
	if e, err := a.lookup(rec.Name); err == nil {
		return e, false, nil
	}
	e, err := a.register(rec)
	if err != nil {
		return nil, false, err
	}
	_ = e.update(func(c *Container) { c.State = StateStopped })
	return e, true, nil
}

// endForLoad kills the container if it runs (what it did since the snapshot is being thrown away, so it gets
// no grace period) and releases its runtime resources. Holds e.op.
func (a *Agent) endForLoad(ctx context.Context, e *entry) error {
	c := e.snapshot()
	switch c.State {
	case StateMigrating, StateCheckpointing, StateRestoring:
		return fmt.Errorf("%w: container %s is %s; wait for that to finish", ErrState, c.Config.Name, c.State)
	case StateRunning:
		_ = a.runc.Kill(ctx, c.Config.Name, syscall.SIGKILL, true)
		if !waitFor(ctx, c.ShimPid, 15*time.Second) {
			return fmt.Errorf("container %s did not end after SIGKILL; look at its processes (pid %d)", c.Config.Name, c.Pid)
		}
	}
	a.release(context.WithoutCancel(ctx), e)
	return e.update(func(c *Container) {
		if c.State == StateRunning {
			c.FinishedAt = time.Now()
		}
		c.State, c.Pid, c.ShimPid = StateStopped, 0, 0
	})
}

// ExpectSnapshot readies this node for the clones of snapshot id while a copy of it is on its way here: the
// lazy-pages daemons of the n clones that start right after the copy start during it (lazySpares.expect), and
// a template keeps spares once it is here (as on the node that took it), started after those clones. Call the returned function once the
// copy was accepted (true) or not.
func (a *Agent) ExpectSnapshot(id string, n int, template bool) func(accepted bool) {
	if !a.lazyOK() || a.HasSnapshot(id) || (n <= 0 && !template) {
		return func(bool) {}
	}
	arrived := a.spares.expect(id, n)
	return func(accepted bool) {
		var ck *checkpoint.Checkpoint
		if accepted {
			ck, _ = a.OpenSnapshot(id)
		}
		arrived(ck)
		switch {
		case ck == nil || !template:
		case n > 0:
			a.spares.prepareLater(ck) // not beside the clones the copy came for
		default:
			a.spares.prepare(ck)
		}
	}
}
