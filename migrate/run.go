package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Job states recorded in raft (the cluster's JobState values).
const (
	StatePlanned    = "planned"
	StateDumping    = "dumping"
	StateStreaming  = "streaming"
	StateRestoring  = "restoring"
	StateCommitted  = "committed"
	StateRolledBack = "rolled-back"
	StateFailed     = "failed"
	// StateUnsettled is a report's outcome only (never recorded): the job stays open for Recover.
	StateUnsettled = "unsettled"
)

// commitTries bounds the attempts at recording a commit whose outcome was uncertain (Options.RetryWait apart:
// a new leader is usually elected within a few seconds).
const commitTries = 5

// Options modify Run.
type Options struct {
	// Progress receives the phases; nil is allowed.
	Progress func(Progress)
	// StepTimeout bounds each step; zero means 10 minutes.
	StepTimeout time.Duration
	// RetryWait is the wait before recording a commit of unknown outcome again; zero means a second.
	RetryWait time.Duration
	Logger    *slog.Logger
}

// Run carries out a stop-copy migration and returns its report. A failure before the target runs the
// container rolls back (the report says so, and the error wraps ErrRolledBack and names the step and node).
func Run(ctx context.Context, job Job, nodes Nodes, rec Recorder, opts Options) (*Report, error) {
	if opts.StepTimeout == 0 {
		opts.StepTimeout = 10 * time.Minute
	}
	if opts.RetryWait == 0 {
		opts.RetryWait = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &runner{job: job, nodes: nodes, rec: rec, opts: opts, start: time.Now(), rep: &Report{Job: job}}
	err := r.run(ctx)
	r.rep.Total = time.Since(r.start)
	return r.rep, err
}

type runner struct {
	job   Job
	nodes Nodes
	rec   Recorder
	opts  Options
	start time.Time
	rep   *Report
	// restoreAsked: the target was asked to restore, so it may run the container.
	restoreAsked bool
}

func (r *runner) phase(name string, bytes int64) {
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Phase: name, Bytes: bytes, Elapsed: time.Since(r.start)})
	}
}

func (r *runner) step(ctx context.Context, name string, f func(context.Context) error) error {
	sctx, cancel := context.WithTimeout(ctx, r.opts.StepTimeout)
	defer cancel()
	if err := f(sctx); err != nil {
		r.rep.FailedStep = name
		return err
	}
	return nil
}

func (r *runner) run(ctx context.Context) error {
	j := r.job
	r.phase("image", 0)
	if err := r.step(ctx, "image", func(ctx context.Context) error { return r.nodes.EnsureImage(ctx, j) }); err != nil {
		return r.fail(ctx, fmt.Errorf("getting image %s onto %s: %w", j.Image, j.Target, err), false)
	}
	r.phase("prepare", 0)
	if err := r.step(ctx, "prepare", func(ctx context.Context) error { return r.nodes.Prepare(ctx, j) }); err != nil {
		return r.fail(ctx, fmt.Errorf("preparing %s: %w", j.Target, err), false)
	}
	if err := r.record(ctx, StateDumping, ""); err != nil {
		return r.fail(ctx, err, false)
	}
	r.phase("dumping", 0)
	var dump *DumpResult
	err := r.step(ctx, "dump", func(ctx context.Context) (err error) {
		dump, err = r.nodes.Dump(ctx, j, r.opts.Progress)
		return err
	})
	if err != nil {
		return r.fail(ctx, fmt.Errorf("dumping on %s and sending to %s: %w", j.Source, j.Target, err), true)
	}
	r.rep.Dump = dump
	r.rep.BytesRaw = dump.PagesBytes + dump.StreamRaw
	r.rep.BytesSent = dump.PagesWire + dump.StreamWire
	if dump.PagesWire == 0 {
		r.rep.BytesSent += dump.PagesBytes // the tunnel was not compressed
	}
	if err := r.record(ctx, StateRestoring, ""); err != nil {
		return r.fail(ctx, err, true)
	}
	r.phase("restoring", r.rep.BytesRaw)
	r.restoreAsked = true
	var res *RestoreResult
	err = r.step(ctx, "restore", func(ctx context.Context) (err error) {
		res, err = r.nodes.Restore(ctx, j, dump)
		return err
	})
	if err != nil {
		return r.fail(ctx, fmt.Errorf("restoring on %s: %w", j.Target, err), true)
	}
	r.rep.Restore = res
	r.rep.Downtime = res.RunningAt.Sub(dump.FrozenAt)
	r.rep.Phases = phasesOf(dump, res)
	return r.commit(ctx)
}

// commit flips the placement in raft, then lets the source drop its frozen copy. If raft refuses the commit,
// the target's copy is the one that must go: the source's is still authoritative. If it cannot tell whether
// the commit was taken (ErrUncertain), it tries again (committing twice is committing once); if it still
// cannot tell, neither copy may go: a roll-back after a commit that was taken would leave the container on no
// node. The job then stays open, the source's copy frozen and the target's running, for Recover.
func (r *runner) commit(ctx context.Context) error {
	j := r.job
	err := r.record(ctx, StateCommitted, "")
	for try := 1; errors.Is(err, ErrUncertain) && try < commitTries; try++ {
		r.opts.Logger.Warn("recording the commit: outcome unknown; trying again", "job", j.ID, "err", err)
		time.Sleep(r.opts.RetryWait)
		err = r.record(ctx, StateCommitted, "")
	}
	switch {
	case errors.Is(err, ErrUncertain):
		r.rep.FailedStep = "commit"
		return r.unsettled(fmt.Errorf("recording the move in the cluster state: %w", err),
			fmt.Sprintf("%s runs it, and its frozen copy stays on %s", j.Target, j.Source))
	case err != nil:
		r.opts.Logger.Error("the commit was refused; stopping the target's copy and thawing the source's", "job", j.ID, "err", err)
		r.rep.FailedStep = "commit"
		return r.fail(ctx, fmt.Errorf("recording the move in the cluster state: %w", err), true)
	}
	r.rep.Outcome = StateCommitted
	r.phase("committed", r.rep.BytesRaw)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.StepTimeout)
	defer cancel()
	if err := r.nodes.Finish(fctx, j, true); err != nil {
		// The move is done; the source's frozen copy stays frozen (never runs) until it is cleaned up.
		r.opts.Logger.Error("the source could not remove its frozen copy", "job", j.ID, "node", j.Source, "err", err)
	}
	return nil
}

// fail rolls back: the target drops what it has (and a copy it may already run), the source thaws.
//
// When the target could not be told to drop a copy it may run (the restore was asked for), the source's copy
// must not thaw, and when the source could not be thawed, the job must not be recorded as over (its copy
// would stay frozen for good): in both cases the job stays open, and the leader's recovery finishes the
// roll-back (or commits, if the target runs the container). A target that could not be told to drop what it
// received before any restore runs nothing: the source thaws, and the job ends as failed.
func (r *runner) fail(ctx context.Context, cause error, sourceFrozen bool) error {
	j := r.job
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.StepTimeout)
	defer cancel()
	state := StateRolledBack
	if err := r.nodes.Abort(bctx, j); err != nil {
		cause = fmt.Errorf("%w (and %s could not be told to drop what it has: %v)", cause, j.Target, err)
		if r.restoreAsked {
			return r.unsettled(cause, fmt.Sprintf("%s may run it, so its frozen copy stays on %s", j.Target, j.Source))
		}
		state = StateFailed
	}
	if sourceFrozen {
		if err := r.nodes.Finish(bctx, j, false); err != nil {
			cause = fmt.Errorf("%w (and thawing it on %s failed: %v)", cause, j.Source, err)
			return r.unsettled(cause, "the roll-back is finished by the leader's recovery")
		}
	}
	if err := r.record(bctx, state, cause.Error()); err != nil {
		r.opts.Logger.Error("could not record the roll-back", "job", j.ID, "err", err)
	}
	r.rep.Outcome, r.rep.Error = state, cause.Error()
	r.phase(state, 0)
	return fmt.Errorf("%w: %w; container %s goes on on %s", ErrRolledBack, cause, j.Container, j.Source)
}

// unsettled ends a migration that must be settled by Recover (see ErrUnsettled); where says what runs where.
func (r *runner) unsettled(cause error, where string) error {
	j := r.job
	r.opts.Logger.Error("migration left open for the leader's recovery", "job", j.ID, "err", cause)
	err := fmt.Errorf("%w: %w; %s; job %s stays open until the leader settles it (ferry ps shows where %s runs then)", ErrUnsettled, cause, where, j.ID, j.Container)
	r.rep.Outcome, r.rep.Error = StateUnsettled, err.Error()
	r.phase(StateUnsettled, 0)
	return err
}

func (r *runner) record(ctx context.Context, state, msg string) error {
	return r.rec.Record(ctx, r.job, state, msg)
}
