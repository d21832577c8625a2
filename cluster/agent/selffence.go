package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
)

// Self-fencing closes the window that failover.go leaves to a node that is cut off but alive: the rest of the
// cluster sees it dead and, after the fencing delay, restores its containers with periodic snapshots
// elsewhere, while the node itself still runs them. So an agent that has heard from no leader for half the
// fencing delay freezes (cgroup freezer, as runc pause) each of its running containers that has periodic
// snapshots, when the other voters could elect a leader without it (not in a cluster of two): by the time the
// cluster restores one elsewhere, this copy no longer runs. When the agent hears
// from a leader again, it catches up with the cluster's state, removes the containers that were restored
// elsewhere meanwhile (the fence pass) and thaws the others, which lost nothing.

// selfFenceEvery is how often an agent checks whether it is cut off.
const selfFenceEvery = 500 * time.Millisecond

func (a *Agent) runSelfFence() {
	if a.cfg.FailoverDelay <= 0 {
		return
	}
	after := a.cfg.FailoverDelay / 2
	frozen := map[string]bool{}
	tickEvery(a.ctx, selfFenceEvery, func() {
		away := a.store.OutOfTouch()
		switch {
		case away > after && a.othersCouldFailOver():
			a.freezeProtected(away, frozen)
		case len(frozen) > 0 && away < time.Second:
			a.thawAfterContact(frozen)
		}
	})
}

// othersCouldFailOver reports whether the other voters of the raft configuration this node knows could elect
// a leader without it, and so restore its containers elsewhere. In a cluster of two (or one), they cannot:
// freezing would only stop containers that nothing else can take over.
func (a *Agent) othersCouldFailOver() bool {
	servers, err := a.store.Servers()
	if err != nil {
		return true // unknown: be safe
	}
	voters, self := 0, false
	for _, sv := range servers {
		if sv.Voter {
			voters++
			self = self || sv.Name == a.cfg.Name
		}
	}
	return canElectWithout(voters, self)
}

// canElectWithout reports whether the voters other than this node (a voter itself when self) make a majority
// of all voters.
func canElectWithout(voters int, self bool) bool {
	others := voters
	if self {
		others--
	}
	return others >= voters/2+1
}

// freezeProtected freezes the running containers that a failover would restore elsewhere, and those that a
// migration to this node restored here without its commit being known: the leader rolls such a migration
// back without this node once it has been dead for the fencing delay (migrate.Recover), and the source's copy
// then runs.
func (a *Agent) freezeProtected(away time.Duration, frozen map[string]bool) {
	st := a.store.State()
	for _, c := range a.node.List() {
		name := c.Config.Name
		placed, ok := st.Containers[name]
		if frozen[name] || c.State != node.StateRunning || !ok {
			continue
		}
		why := fmt.Sprintf("frozen: this node has heard from no leader for %s; the cluster may restore it elsewhere from a snapshot (a copy must not run in two places)", away.Round(time.Second))
		switch {
		case incomingUnsettled(st, name, a.cfg.Name):
			why = fmt.Sprintf("frozen: this node has heard from no leader for %s while the migration of this container here was not committed; the cluster may roll it back to its source (a copy must not run in two places)", away.Round(time.Second))
		case placed.Node != a.cfg.Name || placed.Config.SnapshotEvery <= 0:
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		err := a.node.Freeze(ctx, name, why)
		cancel()
		if err != nil {
			a.log.Error("cut off from the cluster, and could not freeze a container it may restore elsewhere", "container", name, "err", err)
			continue
		}
		frozen[name] = true
		a.log.Warn("cut off from the cluster: froze a container with periodic snapshots, so that it does not run in two places if the cluster restores it elsewhere",
			"container", name, "no_leader_for", away.Round(time.Millisecond))
	}
}

// incomingUnsettled reports whether container name, restored here (self), is being migrated here by a job
// that is not over: the cluster's state still places it on its source.
func incomingUnsettled(st *cluster.State, name, self string) bool {
	m := st.ActiveMigration(name)
	c, ok := st.Containers[name]
	return m != nil && m.Target == self && ok && c.Node != self
}

// failoverPending reports whether a failover of node self (the cluster took it for dead) may still restore
// container name elsewhere: its item is not over.
func failoverPending(st *cluster.State, name, self string) bool {
	d := st.ActiveDrain(self)
	if d == nil || d.Reason != cluster.ReasonFailover {
		return false
	}
	for _, it := range d.Items {
		if it.Container == name && !it.State.Final() {
			return true
		}
	}
	return false
}

// thawAfterContact catches up with the cluster, removes what was restored elsewhere, and thaws the rest.
func (a *Agent) thawAfterContact(frozen map[string]bool) {
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	if err := a.store.WaitCaughtUp(ctx); err != nil {
		return // not caught up yet: the containers stay frozen until it is
	}
	a.fenceOnce(ctx)
	st := a.store.State()
	for name := range frozen {
		if incomingUnsettled(st, name, a.cfg.Name) || failoverPending(st, name, a.cfg.Name) {
			// Frozen until the leader settles it: a migration here committed, or a failover that left it
			// here, and it runs here; rolled back, or restored elsewhere, and the fence removes it.
			continue
		}
		delete(frozen, name)
		if err := a.node.Thaw(ctx, name); err != nil {
			a.log.Info("a container frozen while cut off is not thawed", "container", name, "why", err)
			continue
		}
		a.log.Info("in touch with the cluster again: thawed a container frozen while cut off", "container", name)
	}
}
