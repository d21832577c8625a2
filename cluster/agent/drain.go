package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node/api"
)

// A drain is a job in raft (cluster.DrainJob) that the leader drives: each container of the node is moved by
// a live migration (the same path as `ferry migrate`) to a target that PlaceMove picks, at most MaxParallel at
// a time. A failed migration is retried once on another target; a container that cannot move (no room, two
// failures, the deadline passed) keeps running on the node and its item says why. Every change of an item is
// written to raft, so a new leader resumes the job where the old one left it (resumeDrains).

// drainAttempts is how many migrations a drain tries per container (the first and one retry elsewhere).
const drainAttempts = 2

// drainPoll is how often a drain re-reads the raft state while it waits (for a migration another leader
// started, or to notice it was cancelled).
const drainPoll = 300 * time.Millisecond

// drainRuns are the drains this agent drives as the leader, by job ID.
type drainRuns struct {
	mu   sync.Mutex
	runs map[string]*drainRun
}

// start runs d in the background unless a run of the same job is already under way (then it returns that
// one and false). The run ends on its own; it is forgotten then.
func (r *drainRuns) start(ctx context.Context, d *drainRun) (*drainRun, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]*drainRun{}
	}
	if old, ok := r.runs[d.id]; ok {
		return old, false
	}
	r.runs[d.id] = d
	go func() {
		d.run(ctx)
		r.mu.Lock()
		delete(r.runs, d.id)
		r.mu.Unlock()
	}()
	return d, true
}

func (r *drainRuns) get(id string) *drainRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

// drainRun is one drain job driven by this agent.
type drainRun struct {
	a     *Agent
	id    string
	node  string
	start time.Time

	mu    sync.Mutex // guards items, subs, waits, and the order of item writes to raft
	items []cluster.DrainItem
	subs  map[chan api.DrainEvent]struct{}
	waits map[int]string // why an item of a drain with --force waits for its deadline, by index

	place sync.Mutex // one target choice (and its migration record) at a time
	done  chan struct{}
	// abandoned is set when this agent stopped leading: the job stays unfinished for the new leader.
	abandoned atomic.Bool
}

func newDrainRun(a *Agent, j *cluster.DrainJob) *drainRun {
	return &drainRun{a: a, id: j.ID, node: j.Node, start: j.StartedAt, items: slices.Clone(j.Items),
		subs: map[chan api.DrainEvent]struct{}{}, waits: map[int]string{}, done: make(chan struct{})}
}

// subscribe returns a channel of the run's events and a function that ends the subscription. Events are
// dropped for a subscriber that does not keep up (the final report has everything).
func (d *drainRun) subscribe() (<-chan api.DrainEvent, func()) {
	ch := make(chan api.DrainEvent, 1024)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}
}

func (d *drainRun) emit(ev api.DrainEvent) {
	ev.Node, ev.Elapsed = d.node, time.Since(d.start)
	d.mu.Lock()
	defer d.mu.Unlock()
	for ch := range d.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (d *drainRun) item(i int) cluster.DrainItem {
	d.mu.Lock()
	defer d.mu.Unlock()
	it := d.items[i]
	it.Tried = slices.Clone(it.Tried)
	return it
}

// save records item i in raft (the whole list, in the order the changes were made). An agent that no longer
// leads writes nothing: the new leader's run owns the list, and finds what a migration that ended here did
// from the container's placement and the migration's record.
func (d *drainRun) save(ctx context.Context, i int, it cluster.DrainItem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.items[i] = it
	if !d.a.store.IsLeader() {
		d.abandoned.Store(true)
		return
	}
	items := slices.Clone(d.items)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := d.a.store.Apply(wctx, &cluster.UpdateDrain{ID: d.id, Items: items}); err != nil {
		d.a.log.Warn("recording a drain item failed", "drain", d.id, "container", it.Container, "err", err)
	}
}

// job returns the job as raft has it now (nil if it is gone).
func (d *drainRun) job() *cluster.DrainJob {
	var j *cluster.DrainJob
	d.a.store.View(func(s *cluster.State) {
		if p, ok := s.Drains[d.id]; ok {
			j = p.Clone()
		}
	})
	return j
}

// run drives the job to its end, or until this agent stops leading.
func (d *drainRun) run(ctx context.Context) {
	defer close(d.done)
	j := d.job()
	if j == nil || j.State.Final() {
		return
	}
	log := d.a.log.With("drain", d.id, "node", d.node)
	if j.State == cluster.JobPlanned {
		if _, err := d.a.store.Apply(ctx, &cluster.UpdateDrain{ID: d.id, State: cluster.JobRunning}); err != nil {
			log.Warn("could not start the drain", "err", err)
			return
		}
	}
	log.Info("drain runs", "containers", len(d.items), "max_parallel", j.MaxParallel, "deadline", j.Deadline)
	d.emit(api.DrainEvent{Phase: "running", Message: fmt.Sprintf("%d containers, at most %d at a time", len(d.items), max(j.MaxParallel, 1))})
	work := make(chan int, 2*len(d.items)+1)
	left := 0
	for i, it := range d.items {
		if !it.State.Final() {
			work <- i
			left++
		}
	}
	var mu sync.Mutex
	finish := func() {
		mu.Lock()
		defer mu.Unlock()
		if left--; left == 0 {
			close(work)
		}
	}
	if left == 0 {
		close(work)
	}
	var wg sync.WaitGroup
	for range max(j.MaxParallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if d.move(ctx, i, j) {
					work <- i
					continue
				}
				finish()
			}
		}()
	}
	wg.Wait()
	if d.abandoned.Load() || ctx.Err() != nil {
		log.Info("drain left to the next leader")
		return
	}
	d.end(ctx, log)
}

// end records the job's outcome: committed when every container moved, failed when some stay.
func (d *drainRun) end(ctx context.Context, log *slog.Logger) {
	var stay []string
	moved := 0
	for _, it := range d.items {
		switch it.State {
		case cluster.JobCommitted, cluster.JobRestored:
			moved++
			continue
		case cluster.JobSnapshotted:
			continue // stopped into a snapshot, as --force asked
		}
		stay = append(stay, fmt.Sprintf("%s (%s)", it.Container, it.Error))
	}
	op := &cluster.UpdateDrain{ID: d.id, State: cluster.JobCommitted}
	if len(stay) > 0 {
		op.State = cluster.JobFailed
		op.Error = fmt.Sprintf("%d of %d containers stay on %s: %s", len(stay), len(d.items), d.node, strings.Join(stay, "; "))
	}
	if j := d.job(); j != nil && j.State.Final() {
		op.State, op.Error = j.State, "" // cancelled meanwhile: keep what undrain recorded
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := d.a.store.Apply(wctx, op); err != nil {
		log.Info("could not record the end of the drain; the next leader will", "err", err)
		return
	}
	log.Info("drain ended", "state", op.State, "moved", moved, "stay", len(stay))
	d.emit(api.DrainEvent{Phase: string(op.State), Message: op.Error})
}

// move takes item i one step: it moves the container, or finds why it cannot. It returns true when the item
// is to be tried again (a retry on another target).
func (d *drainRun) move(ctx context.Context, i int, j *cluster.DrainJob) (again bool) {
	it := d.item(i)
	if d.abandoned.Load() {
		return false
	}
	if !d.a.store.IsLeader() {
		d.abandoned.Store(true)
		return false
	}
	if cur := d.job(); cur == nil || cur.State.Final() {
		if it.State == cluster.JobPlanned {
			it.State, it.Error = cluster.JobFailed, "the drain was ended (undrain or maintenance off) before it moved"
			d.save(ctx, i, it)
		}
		return false
	}
	if j.Reason == cluster.ReasonFailover {
		return d.restore(ctx, i, it)
	}
	if m := d.a.store.State().ActiveMigration(it.Container); m != nil && m.Target == d.node {
		// On its way here (a migration started before the drain): it lands, then moves on.
		return d.waitMigration(ctx, m.ID)
	}
	st := d.a.store.State()
	c, ok := st.Containers[it.Container]
	switch {
	case !ok:
		it.State, it.Error = cluster.JobSkipped, "removed during the drain"
		d.save(ctx, i, it)
		return false
	case c.Node != d.node:
		it.State, it.Target, it.Error = cluster.JobCommitted, c.Node, ""
		d.save(ctx, i, it)
		d.emit(api.DrainEvent{Container: it.Container, Target: c.Node, Phase: "committed", Downtime: it.Downtime})
		return false
	}
	if m := st.ActiveMigration(c.Name); m != nil {
		// A migration another leader (or `ferry migrate`) started: let it end, then look again.
		if !d.waitMigration(ctx, m.ID) {
			return false
		}
		return true
	}
	if it.Migration != "" && it.State == cluster.JobRunning {
		// A previous leader's migration of this item ended without moving it.
		if m, ok := st.Migrations[it.Migration]; ok && m.State.Final() && m.State != cluster.JobCommitted {
			if !slices.Contains(it.Tried, m.Target) {
				it.Tried = append(it.Tried, m.Target)
			}
			it.Error = fmt.Sprintf("migration to %s failed: %s", m.Target, m.Error)
		}
	}
	if why := skipReason(c, d.node); why != "" {
		it.State, it.Error = cluster.JobSkipped, why
		d.save(ctx, i, it)
		d.emit(api.DrainEvent{Container: it.Container, Phase: "skipped", Message: why})
		return false
	}
	if it.Attempts >= drainAttempts {
		return d.cannotMove(ctx, i, it, j, fmt.Sprintf("it failed %d migrations (%s)", it.Attempts, it.Error))
	}
	if !j.Deadline.IsZero() && time.Now().After(j.Deadline) {
		why := "the deadline passed before it could move"
		if w := d.waitingFor(i, ""); w != "" {
			why += " (" + w + ")"
		} else if it.Error != "" {
			why += " (" + it.Error + ")"
		}
		return d.cannotMove(ctx, i, it, j, why)
	}
	job, err := d.plan(ctx, c, it)
	if err != nil {
		why := err.Error()
		if it.Error != "" {
			why = it.Error + "; no other target to retry on: " + why
		}
		return d.cannotMove(ctx, i, it, j, why)
	}
	defer d.a.migrations.done(job.ID)
	it.State, it.Target, it.Migration, it.Error = cluster.JobRunning, job.Target, job.ID, ""
	it.Attempts++
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Target: job.Target, Phase: "planned", Message: fmt.Sprintf("attempt %d", it.Attempts)})
	rep, err := d.a.runMigration(context.WithoutCancel(ctx), job, func(p migrate.Progress) {
		if p.Phase == migrate.StateCommitted || p.Phase == migrate.StateRolledBack || p.Phase == migrate.StateFailed || p.Phase == migrate.StateUnsettled {
			return // the drain's own event follows, with the outcome
		}
		d.emit(api.DrainEvent{Container: it.Container, Target: job.Target, Phase: p.Phase, Bytes: p.Bytes})
	})
	if err == nil && rep != nil && rep.Outcome == migrate.StateCommitted {
		it.State, it.Downtime = cluster.JobCommitted, rep.Downtime
		d.save(ctx, i, it)
		d.emit(api.DrainEvent{Container: it.Container, Target: job.Target, Phase: "committed", Downtime: rep.Downtime})
		return false
	}
	msg := "the migration failed"
	if rep != nil && rep.Error != "" {
		msg = rep.Error
	} else if err != nil {
		msg = err.Error()
	}
	it.State, it.Error = cluster.JobPlanned, fmt.Sprintf("migration to %s failed: %s", job.Target, msg)
	it.Tried = append(it.Tried, job.Target)
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Target: job.Target, Phase: "failed", Message: it.Error})
	if it.Attempts < drainAttempts {
		d.emit(api.DrainEvent{Container: it.Container, Phase: "retry", Message: "trying another target"})
		return true
	}
	return d.cannotMove(ctx, i, it, j, fmt.Sprintf("it failed %d migrations (%s)", it.Attempts, it.Error))
}

// cannotMove handles item i that cannot move now, for why. Without --force it stays on the node. With
// --force, before the deadline it is tried again a moment later (room may appear; a container whose
// migrations failed twice is not migrated again, it waits); past the deadline it is snapshotted and stopped.
func (d *drainRun) cannotMove(ctx context.Context, i int, it cluster.DrainItem, j *cluster.DrainJob, why string) bool {
	if !j.Force {
		return d.stays(ctx, i, it, why)
	}
	if wait := time.Until(j.Deadline); wait > 0 {
		if d.waitingFor(i, why) != why {
			d.emit(api.DrainEvent{Container: it.Container, Phase: "waiting",
				Message: fmt.Sprintf("%s; --force: snapshotted and stopped at the deadline (in %s) unless it can move by then", why, wait.Round(time.Second))})
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(wait, forceRetry)):
		}
		return true
	}
	return d.force(ctx, i, it, why)
}

// waitingFor returns why item i waited for the deadline until now ("" if it did not), and records why
// instead when why is not "".
func (d *drainRun) waitingFor(i int, why string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.waits[i]
	if why != "" {
		d.waits[i] = why
	}
	return old
}

// forceRetry is how often a drain with --force looks again, before its deadline, for a place for a
// container that cannot move.
const forceRetry = 2 * time.Second

// force snapshots item i's container and stops it (past the deadline of a drain with --force). If the
// snapshot fails, the container keeps running on the node and the item says why.
func (d *drainRun) force(ctx context.Context, i int, it cluster.DrainItem, why string) bool {
	d.emit(api.DrainEvent{Container: it.Container, Phase: "snapshotting", Message: why + "; --force: snapshot, then stop"})
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	res, err := d.a.CreateSnapshot(sctx, api.SnapshotRequest{Container: it.Container, Stop: true}, false, func(phase, detail string) {
		d.emit(api.DrainEvent{Container: it.Container, Phase: phase, Message: detail})
	})
	if err != nil {
		if running, rerr := (migrationNodes{d.a}).Running(sctx, d.node, it.Container); rerr == nil && !running {
			// The dump stopped it and a later step failed (recording the snapshot, or its answer was lost).
			return d.leave(ctx, i, it, fmt.Sprintf("%s; --force: the snapshot failed after it stopped the container (%v); it is stopped on %s, and its snapshot's data, if any, stays there",
				why, err, d.node), slog.LevelError, "a container was stopped by a snapshot that failed (drain --force)")
		}
		return d.stays(ctx, i, it, fmt.Sprintf("%s; --force: the snapshot failed, so it was not stopped (%v)", why, err))
	}
	id := res.Snapshot.ID
	it.State, it.Snapshot = cluster.JobSnapshotted, id
	it.Error = fmt.Sprintf("%s; --force: snapshotted as %s and stopped; bring it back with ferry snapshot load %s %s", why, id, it.Container, id)
	if len(res.Warnings) > 0 {
		it.Error += " (" + strings.Join(res.Warnings, "; ") + ")"
	}
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Phase: "snapshotted", Message: it.Error})
	d.a.log.Warn("a container that could not move was snapshotted and stopped (drain --force)", "drain", d.id,
		"container", it.Container, "snapshot", id, "copies", res.Snapshot.Copies, "why", why)
	return false
}

// stays records that item i keeps running on the drained node, and why.
func (d *drainRun) stays(ctx context.Context, i int, it cluster.DrainItem, why string) bool {
	return d.leave(ctx, i, it, why+"; it keeps running on "+d.node, slog.LevelWarn, "a container stays on the drained node")
}

// leave records that item i is not moved (failed, with note), tells the followers and logs msg at level. It
// returns false, as the item's step does when it is over.
func (d *drainRun) leave(ctx context.Context, i int, it cluster.DrainItem, note string, level slog.Level, msg string) bool {
	it.State, it.Error = cluster.JobFailed, note
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Phase: "stays", Message: note})
	d.a.log.Log(ctx, level, msg, "drain", d.id, "node", d.node, "container", it.Container, "why", note)
	return false
}

// drainItems lists what a drain of node takes care of: the containers placed on it, and those a migration
// started before the drain is bringing to it (they would land after the drain had listed the node's).
func drainItems(st *cluster.State, node string) []cluster.DrainItem {
	var items []cluster.DrainItem
	for _, c := range st.ContainersOn(node) {
		items = append(items, cluster.DrainItem{Container: c.Name, State: cluster.JobPlanned})
	}
	for _, c := range st.ContainerList() {
		if m := st.ActiveMigration(c.Name); m != nil && m.Target == node && c.Node != node {
			items = append(items, cluster.DrainItem{Container: c.Name, State: cluster.JobPlanned})
		}
	}
	return items
}

// skipReason says why a container is not to be moved, or "".
func skipReason(c *cluster.Container, nodeName string) string {
	switch {
	case c.Config.NoMigrate:
		return "started with --no-migrate: not moved; it stays on " + nodeName
	case c.Desired != cluster.DesiredRunning:
		return "not running (" + string(c.Desired) + "): nothing to move live; it stays recorded on " + nodeName
	}
	return ""
}

// plan picks the target and records the migration, one container at a time, so that parallel workers see
// each other's migrations in flight when they choose. The migration's ID is marked as driven here (the
// caller ends that mark).
func (d *drainRun) plan(ctx context.Context, c *cluster.Container, it cluster.DrainItem) (migrate.Job, error) {
	d.place.Lock()
	defer d.place.Unlock()
	st := d.a.store.State()
	src := st.Nodes[d.node]
	target, err := cluster.PlaceMove(st, cluster.MoveRequest{
		Container: c.Name, MemoryBytes: c.Config.MemoryBytes, Exclude: append([]string{d.node}, it.Tried...),
		Compatible: func(n *cluster.Node) error { return criuCompatible(src, n) },
	})
	if err != nil {
		return migrate.Job{}, err
	}
	job, err := d.a.planMigration(api.MigrateRequest{Container: c.Name, Source: d.node, Target: target, Mode: migrate.ModeAuto})
	if err != nil {
		return migrate.Job{}, err
	}
	d.a.migrations.add(job.ID)
	if err := d.a.recordMigration(ctx, job); err != nil {
		d.a.migrations.done(job.ID)
		return migrate.Job{}, err
	}
	return job, nil
}

// criuCompatible says why dst cannot take a migration from src (its CRIU is unusable, or no mode suits both).
func criuCompatible(src, dst *cluster.Node) error {
	if !slices.Contains(cluster.FeatureList(dst.Features), "network_lock") {
		return fmt.Errorf("%s's CRIU cannot be used (its probe failed)", dst.Name)
	}
	var srcFeatures []string
	if src != nil {
		srcFeatures = cluster.FeatureList(src.Features)
	}
	if _, err := migrate.ChooseMode(migrate.ModeAuto, "source", dst.Name, srcFeatures, cluster.FeatureList(dst.Features)); err != nil {
		return fmt.Errorf("%s: %v", dst.Name, err)
	}
	return nil
}

// waitMigration waits until migration id is final (another leader's recovery or its own runner ends it). It
// returns false if this agent stops leading or ctx ends first.
func (d *drainRun) waitMigration(ctx context.Context, id string) bool {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		var final bool
		d.a.store.View(func(s *cluster.State) {
			m, ok := s.Migrations[id]
			final = !ok || m.State.Final()
		})
		if final {
			return true
		}
		if !d.a.store.IsLeader() {
			d.abandoned.Store(true)
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// resumeDrains runs on the leader: every unfinished drain that this agent does not drive yet (a previous
// leader's) is taken up where it was left.
func (a *Agent) resumeDrains(ctx context.Context) {
	for _, j := range a.store.State().UnfinishedDrains() {
		if a.drains.get(j.ID) != nil {
			continue
		}
		if _, started := a.drains.start(a.ctx, newDrainRun(a, j)); started {
			a.log.Info("resuming a drain a previous leader left", "drain", j.ID, "node", j.Node)
		}
	}
}

// drainReport turns a drain job into its report.
func drainReport(j *cluster.DrainJob) *api.DrainReport {
	r := &api.DrainReport{ID: j.ID, Node: j.Node, State: string(j.State), Error: j.Error, Reason: j.Reason,
		MaxParallel: j.MaxParallel, Force: j.Force, Deadline: j.Deadline, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, Items: []api.DrainItemReport{}}
	if !j.FinishedAt.IsZero() {
		r.Took = j.FinishedAt.Sub(j.StartedAt)
	}
	for _, it := range j.Items {
		r.Items = append(r.Items, api.DrainItemReport{Container: it.Container, State: string(it.State), Target: it.Target,
			Downtime: it.Downtime, Attempts: it.Attempts, Tried: it.Tried, Error: it.Error, Migration: it.Migration,
			Snapshot: it.Snapshot, Lost: it.Lost})
		switch it.State {
		case cluster.JobCommitted, cluster.JobRestored:
			r.Moved++
		case cluster.JobFailed, cluster.JobSkipped:
			r.Stayed++
		case cluster.JobSnapshotted:
			r.Stopped++
		}
	}
	return r
}
