package node

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/node/criu"
)

// CloneReport says how one clone started.
type CloneReport struct {
	Container string             `json:"container"`
	Node      string             `json:"node"`
	Snapshot  string             `json:"snapshot"`
	Source    string             `json:"source"` // the container the snapshot was taken of
	Pid       int                `json:"pid"`
	Lazy      bool               `json:"lazy"` // started before its memory was in; CRIU's lazy-pages fills it in
	Took      time.Duration      `json:"took"`
	Phases    []PhaseTime        `json:"phases,omitempty"` // when each step began, from the start
	CRIU      *criu.RestoreStats `json:"criu,omitempty"`
}

// lazyHold is how long a container started from a snapshot (a clone, a load) has its lazy-pages daemon serve
// only its faults (Config.LazyHold; 0 when negative).
func (a *Agent) lazyHold() time.Duration { return max(a.cfg.LazyHold, 0) }

// Clone starts a new container named name from snapshot id: the snapshot's memory, writable layer and
// recorded configuration, with its own runc container, bundle, writable layer (unpacked from the snapshot's),
// cgroup, PID namespace and log. When the node's CRIU has userfaultfd, the clone starts at once and its memory
// is filled in from the local images by `criu lazy-pages` (one daemon per clone, with its socket in the
// clone's own restore work directory, so any number of clones of one snapshot can start at the same time;
// the images are only read); the daemon is a spare started ahead of need when there is one (lazySpares).
// The snapshot's files are checked against its manifest once, when this agent took, received or first used
// it, not at every clone: a snapshot's files are never written after it is sealed. On failure nothing of the
// clone is left.
func (a *Agent) Clone(ctx context.Context, id, name string, progress ProgressFunc) (*CloneReport, error) {
	if err := a.criuReady(); err != nil {
		return nil, err
	}
	if !ValidName(name) {
		return nil, fmt.Errorf("%w: container name %q: use lower-case letters, digits, '.', '_' or '-' (at most 63)", ErrInvalid, name)
	}
	ck, err := a.OpenSnapshot(id)
	if err != nil {
		return nil, err
	}
	var phases []PhaseTime
	ph := newPhaser(func(p Progress) {
		phases = append(phases, PhaseTime{Phase: p.Phase, At: p.Elapsed})
		if progress != nil {
			progress(p)
		}
	})
	ph.phase("verifying", "checking the snapshot against its manifest")
	if err := a.verifySnapshot(ctx, ck, true); err != nil {
		return nil, fmt.Errorf("%w: refusing to clone snapshot %s: %v", ErrRejected, id, err)
	}
	rec, err := a.snapshotRecord(ck)
	if err != nil {
		return nil, err
	}
	source := rec.Name
	rec.Name = name
	e, err := a.register(rec)
	if err != nil {
		return nil, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	lazy := a.lazyOK()
	var start lazyStart
	if lazy {
		var end func()
		start, end = a.spares.begin(ck)
		defer end()
	}
	pid, err := a.restoreFrom(ctx, e, ck, rec, start, nil, a.lazyHold(), ph)
	if err != nil {
		a.forget(e)
		return nil, err
	}
	_ = e.update(func(c *Container) { c.Checkpoint = "" })
	rep := &CloneReport{Container: name, Node: a.cfg.Name, Snapshot: id, Source: source, Pid: pid, Lazy: lazy, Took: time.Since(ph.start), Phases: phases}
	rep.CRIU, _ = criu.ReadRestoreStats(a.restoreWork(e))
	a.log.Info("clone started", "container", name, "snapshot", id, "source", source, "lazy", lazy, "took", rep.Took.Round(time.Millisecond))
	return rep, nil
}
