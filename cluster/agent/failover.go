package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/node/checkpoint"
)

// A failover brings back the containers of a node that died, from their latest snapshots. The leader
// starts one for a node once memberlist has had it down (dead) and raft has not heard from it for the
// fencing delay (Config.FailoverDelay): a job in raft, a drain job with reason "failover", so that it
// survives a change of leader and `ferry node drain --status NODE` shows it. Each container of the node
// that runs with periodic snapshots (ferry run --snapshot-every) is restored on another node from the
// newest good snapshot that has a copy on an alive node (LoadSnapshotOn); its item records the snapshot
// and what was lost: the time from that snapshot to the node going down. A container without periodic
// snapshots is left placed on the dead node: its item says so, and the leader's log too. A node that holds
// no container with periodic snapshots gets no failover (its containers wait for it, and the log says so
// once). Unlike a drain, a failover leaves the node's eligibility alone: back, it takes new work again.
//
// The node, when it comes back, must not run the restored containers again: its agent removes the local
// containers that the cluster places on another node (fence.go), once right after raft has caught up and
// before its API serves anything, then every few seconds. A node that was dead ran nothing meanwhile; a
// node that was only cut off (its agent and containers running, its link down) looks the same from the
// rest of the cluster: its agent freezes those containers once it has heard from no leader for half the
// fencing delay, and, back in touch, removes the ones restored elsewhere and thaws the rest (selffence.go).

// failoverParallel is how many restores a failover runs at a time.
const failoverParallel = 2

// runFailover is a leader loop; it returns when ctx ends (leadership lost).
func (a *Agent) runFailover(ctx context.Context) {
	if a.cfg.FailoverDelay < 0 {
		return
	}
	warned := map[string]time.Time{} // node -> the DownSince it was warned about
	tickEvery(ctx, time.Second, func() {
		st := a.store.State()
		servers, err := a.store.Servers()
		if err != nil {
			return
		}
		inRaft := map[string]bool{}
		for _, sv := range servers {
			inRaft[sv.Name] = true
		}
		for _, n := range st.NodeList() {
			if !failoverDue(st, n, a.cfg.Name, time.Now(), a.cfg.FailoverDelay, inRaft[n.Name], a.store.RaftSilence) {
				a.warnUnprotected(st, n, warned)
				continue
			}
			if err := a.startFailover(ctx, n.Name); err != nil {
				a.log.Warn("could not start the failover of a dead node; trying again", "node", n.Name, "err", err)
			}
		}
	})
}

// warnUnprotected logs, once per time down, the containers of a node dead for the failover delay that no
// failover brings back (no periodic snapshots), when no failover job lists them.
func (a *Agent) warnUnprotected(st *cluster.State, n *cluster.Node, warned map[string]time.Time) {
	if n.Status != cluster.StatusDead || n.DownSince.IsZero() || time.Since(n.DownSince) < a.cfg.FailoverDelay ||
		warned[n.Name].Equal(n.DownSince) || len(restorable(st, n.Name)) > 0 {
		return
	}
	warned[n.Name] = n.DownSince
	if left := unprotected(st, n.Name); len(left) > 0 {
		a.log.Warn("node is dead; its containers have no periodic snapshots, so nothing restores them elsewhere: they stay placed on it until it comes back",
			"node", n.Name, "down_since", n.DownSince, "containers", left)
	}
}

// failoverDue says whether node n needs a failover now: it is not self, memberlist has had it dead and
// raft (when it is a raft server) has not heard from it for at least delay, it holds containers with
// periodic snapshots, nothing drains it, and no failover has been started for it since it went down.
// silence is Store.RaftSilence.
func failoverDue(st *cluster.State, n *cluster.Node, self string, now time.Time, delay time.Duration, inRaft bool,
	silence func(string) (time.Time, bool)) bool {
	if n.Name == self || n.Status != cluster.StatusDead || n.DownSince.IsZero() || now.Sub(n.DownSince) < delay {
		return false
	}
	if inRaft {
		since, silent := silence(n.Name)
		if !silent || now.Sub(since) < delay {
			return false
		}
	}
	if len(restorable(st, n.Name)) == 0 || st.ActiveDrain(n.Name) != nil {
		return false
	}
	if f := st.LatestFailover(n.Name); f != nil && !f.StartedAt.Before(n.DownSince) {
		// This time down is being or has been handled; again only for containers it left for want of a
		// place that now have one.
		return f.State.Final() && placeFound(st, f, n.Name)
	}
	return true
}

// placeFound reports whether a container that failover f left on the dead node for want of a place (no node
// with room, no snapshot copy on an alive node) can now be restored somewhere.
func placeFound(st *cluster.State, f *cluster.DrainJob, dead string) bool {
	for _, it := range f.Items {
		c, ok := st.Containers[it.Container]
		if !it.Waiting || it.State != cluster.JobFailed || !ok || c.Node != dead || !slices.Contains(restorable(st, dead), c.Name) {
			continue
		}
		if sn := latestRestorable(st, c.Name, dead); sn != nil {
			if _, err := restoreTarget(st, c, sn, dead, nil); err == nil {
				return true
			}
		}
	}
	return false
}

// restorable returns the containers on node that a failover restores: meant to run, with periodic snapshots.
func restorable(st *cluster.State, nodeName string) []string {
	var out []string
	for _, c := range st.ContainersOn(nodeName) {
		if c.Desired == cluster.DesiredRunning && c.Config.SnapshotEvery > 0 {
			out = append(out, c.Name)
		}
	}
	return out
}

// unprotected returns the containers on node that are meant to run and have no periodic snapshots: what a
// failover cannot bring back.
func unprotected(st *cluster.State, nodeName string) []string {
	var out []string
	for _, c := range st.ContainersOn(nodeName) {
		if c.Desired == cluster.DesiredRunning && c.Config.SnapshotEvery <= 0 {
			out = append(out, c.Name)
		}
	}
	return out
}

// startFailover records a failover job for the dead node and starts running it.
func (a *Agent) startFailover(ctx context.Context, nodeName string) error {
	st := a.store.State()
	now := time.Now()
	j := cluster.DrainJob{ID: checkpoint.NewID(now), Node: nodeName, State: cluster.JobPlanned, Reason: cluster.ReasonFailover,
		MaxParallel: failoverParallel}
	for _, c := range st.ContainersOn(nodeName) {
		j.Items = append(j.Items, cluster.DrainItem{Container: c.Name, State: cluster.JobPlanned})
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.store.Apply(wctx, &cluster.CreateDrain{Job: j}); err != nil {
		return clusterError(err)
	}
	a.log.Warn("node is dead: restoring its containers with periodic snapshots on other nodes from their latest snapshots",
		"node", nodeName, "failover", j.ID, "down_since", st.Nodes[nodeName].DownSince, "restoring", restorable(st, nodeName),
		"left_on_node_without_snapshots", unprotected(st, nodeName))
	rec := a.store.State().Drains[j.ID]
	if rec == nil {
		return fmt.Errorf("the failover job %s is not in the state after it was recorded", j.ID)
	}
	a.drains.start(a.ctx, newDrainRun(a, rec))
	return nil
}

// restore takes item i of a failover one step: it restores the container on another node from its latest
// snapshot, or finds why it cannot. It returns true when the item is to be tried again.
func (d *drainRun) restore(ctx context.Context, i int, it cluster.DrainItem) (again bool) {
	st := d.a.store.State()
	c, ok := st.Containers[it.Container]
	dead := st.Nodes[d.node]
	switch {
	case !ok:
		it.State, it.Error = cluster.JobSkipped, "removed during the failover"
		d.save(ctx, i, it)
		return false
	case c.Node != d.node && it.Snapshot != "" && c.Node == it.Target:
		// Restored by an earlier run of this job (a previous leader) that could not record it.
		return d.restored(ctx, i, it, st)
	case c.Node != d.node:
		it.State, it.Target, it.Error = cluster.JobCommitted, c.Node, "it was placed on "+c.Node+" meanwhile"
		d.save(ctx, i, it)
		return false
	case dead == nil || dead.Status == cluster.StatusAlive:
		it.State, it.Error = cluster.JobSkipped, d.node+" is alive again: not restored elsewhere, it runs there"
		d.save(ctx, i, it)
		d.emit(api.DrainEvent{Container: it.Container, Phase: "skipped", Message: it.Error})
		return false
	case c.Desired != cluster.DesiredRunning:
		it.State, it.Error = cluster.JobSkipped, "not running ("+string(c.Desired)+"): nothing to restore; it stays recorded on "+d.node
		d.save(ctx, i, it)
		return false
	case c.Config.SnapshotEvery <= 0:
		it.State, it.Error = cluster.JobSkipped, "no periodic snapshots (ferry run --snapshot-every), so nothing to restore it from: it stays placed on "+
			d.node+" until that node comes back (or an operator loads one of its snapshots: ferry snapshot ls "+c.Name+")"
		d.save(ctx, i, it)
		d.emit(api.DrainEvent{Container: it.Container, Phase: "skipped", Message: it.Error})
		d.a.log.Warn("a dead node's container has no periodic snapshots: it stays placed there", "node", d.node, "container", c.Name)
		return false
	}
	if m := st.ActiveMigration(c.Name); m != nil {
		return d.waitMigration(ctx, m.ID) // a migration off the node when it died: its recovery ends it first
	}
	if it.State == cluster.JobRunning {
		// An earlier run of this job (a previous leader) may have loaded it on its target.
		if again, done := d.loadedOn(ctx, i, it); done {
			return again
		}
	}
	if it.Attempts >= drainAttempts {
		return d.notRestored(ctx, i, it, fmt.Sprintf("%d restores failed (%s)", it.Attempts, it.Error))
	}
	sn := latestRestorable(st, c.Name, d.node)
	if sn == nil {
		it.Waiting = true
		return d.notRestored(ctx, i, it, "no good snapshot of it has a copy on an alive node (a failover restores it when a node holding one is back)")
	}
	target, err := restoreTarget(st, c, sn, d.node, it.Tried)
	if err != nil {
		it.Waiting = len(it.Tried) == 0 // no place at all, not only places that failed: one may appear
		why := err.Error()
		if it.Waiting {
			why += " (a failover restores it when a node has room)"
		}
		return d.notRestored(ctx, i, it, why)
	}
	it.State, it.Target, it.Snapshot, it.Error = cluster.JobRunning, target, sn.ID, ""
	it.Attempts++
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Target: target, Phase: "restoring",
		Message: fmt.Sprintf("from snapshot %s, taken %s before %s went down", sn.ID, lostSince(sn, dead).Round(time.Millisecond), d.node)})
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	err = d.a.LoadSnapshotOn(lctx, sn.ID, target)
	cancel()
	if err == nil {
		return d.restored(ctx, i, it, d.a.store.State())
	}
	if again, done := d.loadedOn(ctx, i, it); done {
		return again
	}
	it.State, it.Error = cluster.JobPlanned, fmt.Sprintf("restoring on %s from snapshot %s failed: %v", target, sn.ID, err)
	it.Tried = append(it.Tried, target)
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Target: target, Phase: "failed", Message: it.Error})
	return true
}

// loadedOn handles item i when its target may run its container, loaded from its snapshot by a load whose
// placement was not recorded (the load's answer or its raft write failed, or the leader that made it died):
// another node must not load it too while that copy runs. If the target runs it, the placement is recorded
// now (the item is restored), or, if that fails, the item is tried again later on the same target; done is
// false when the target does not run it (or cannot say), and the caller goes on.
func (d *drainRun) loadedOn(ctx context.Context, i int, it cluster.DrainItem) (again, done bool) {
	st := d.a.store.State()
	sn, ok := st.Snapshots[it.Snapshot]
	if it.Target == "" || !ok {
		return false, false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	running, err := (migrationNodes{d.a}).Running(cctx, it.Target, it.Container)
	if errors.Is(err, node.ErrState) { // still restoring it: ask again in a moment
		select {
		case <-ctx.Done():
		case <-time.After(forceRetry):
		}
		return true, true
	}
	if err != nil || !running {
		return false, false
	}
	if _, err := d.a.placeLoaded(cctx, sn, it.Target); err != nil {
		d.a.log.Warn("a failover's container runs on its target, but its placement could not be recorded; trying again", "container", it.Container, "target", it.Target, "err", err)
		it.State, it.Error = cluster.JobRunning, fmt.Sprintf("loaded on %s, but its placement could not be recorded yet: %v", it.Target, err)
		d.save(ctx, i, it)
		select {
		case <-ctx.Done():
		case <-time.After(forceRetry):
		}
		return true, true
	}
	return d.restored(ctx, i, it, d.a.store.State()), true
}

// restored records that item i runs again on its target, from its snapshot, and what it lost.
func (d *drainRun) restored(ctx context.Context, i int, it cluster.DrainItem, st *cluster.State) bool {
	dead := st.Nodes[d.node]
	it.State, it.Error = cluster.JobRestored, ""
	if sn, ok := st.Snapshots[it.Snapshot]; ok {
		it.Lost = lostSince(sn, dead)
	}
	if dead != nil && !dead.DownSince.IsZero() {
		it.Downtime = time.Since(dead.DownSince)
	}
	d.save(ctx, i, it)
	d.emit(api.DrainEvent{Container: it.Container, Target: it.Target, Phase: "restored", Downtime: it.Downtime,
		Message: fmt.Sprintf("from snapshot %s; lost %s", it.Snapshot, it.Lost.Round(time.Millisecond))})
	d.a.log.Warn("container restored on another node from its latest snapshot after its node died", "node", d.node,
		"container", it.Container, "target", it.Target, "snapshot", it.Snapshot, "lost", it.Lost.Round(time.Millisecond),
		"down_for", it.Downtime.Round(time.Millisecond))
	return false
}

// notRestored records that item i stays placed on the dead node, and why.
func (d *drainRun) notRestored(ctx context.Context, i int, it cluster.DrainItem, why string) bool {
	return d.leave(ctx, i, it, why+"; it stays placed on "+d.node, slog.LevelError, "a dead node's container could not be restored elsewhere")
}

// lostSince is what restoring from sn loses: the time from the snapshot to the node going down (0 if the
// node's down time is unknown or earlier).
func lostSince(sn *cluster.Snapshot, dead *cluster.Node) time.Duration {
	if dead == nil || dead.DownSince.IsZero() {
		return 0
	}
	return max(dead.DownSince.Sub(sn.Created), 0)
}

// latestRestorable returns the container's newest snapshot that is not marked bad and has a copy on an
// alive node other than the dead one, or nil.
func latestRestorable(st *cluster.State, container, dead string) *cluster.Snapshot {
	list := st.SnapshotsOf(container)
	for i := len(list) - 1; i >= 0; i-- {
		sn := list[i]
		if sn.Bad {
			continue
		}
		for _, h := range sn.Holders() {
			if n, ok := st.Nodes[h]; ok && h != dead && n.Status == cluster.StatusAlive {
				return sn
			}
		}
	}
	return nil
}

// restoreTarget picks the node to restore c on, as a drain picks a target (cluster.PlaceMove), among the
// nodes that hold a copy of sn first (no copy to send), then among all.
func restoreTarget(st *cluster.State, c *cluster.Container, sn *cluster.Snapshot, dead string, tried []string) (string, error) {
	usable := func(n *cluster.Node) error {
		if !slices.Contains(cluster.FeatureList(n.Features), "network_lock") {
			return fmt.Errorf("%s's CRIU cannot be used (its probe failed)", n.Name)
		}
		return nil
	}
	exclude := append([]string{dead}, tried...)
	var notHolding []string
	for _, n := range st.NodeList() {
		if !slices.Contains(sn.Holders(), n.Name) {
			notHolding = append(notHolding, n.Name)
		}
	}
	req := cluster.MoveRequest{Container: c.Name, MemoryBytes: c.Config.MemoryBytes, Exclude: append(slices.Clone(exclude), notHolding...), Compatible: usable}
	if target, err := cluster.PlaceMove(st, req); err == nil {
		return target, nil
	}
	req.Exclude = exclude
	return cluster.PlaceMove(st, req)
}
