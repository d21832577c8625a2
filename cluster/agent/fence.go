package agent

import (
	"context"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
)

// A container must never run in two places. When a node is down or cut off, the cluster may restore one of
// its containers elsewhere (a snapshot loaded on a node that holds a copy); the node's own copy may still be
// running, and it comes back with the node. Every agent therefore looks, every few seconds, for containers
// it runs that the cluster's state places on another node, and removes them.
//
// Left alone: a container with an active migration (its target runs it before the commit moves it), one
// that this node is busy with (dumping, migrating, restoring), one that the cluster does not know, and one
// whose placement on this node is being recorded (a snapshot load here is followed by the raft write that
// moves it; see expectPlacement).
//
// Likewise, snapshot data that a node kept while the snapshot was removed or dropped elsewhere (the node was
// down) is removed once it is some minutes old and not in the cluster's catalogue.

// fenceEvery is how often an agent looks for containers placed elsewhere.
const fenceEvery = 3 * time.Second

// placementGrace is how long a container that was just loaded here is left alone while its new placement is
// being recorded.
const placementGrace = time.Minute

// expected remembers containers restored on this node whose placement the cluster is about to move here.
type expected struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// expectPlacement marks container name as about to be placed on this node.
func (a *Agent) expectPlacement(name string) {
	a.expected.mu.Lock()
	defer a.expected.mu.Unlock()
	if a.expected.m == nil {
		a.expected.m = map[string]time.Time{}
	}
	a.expected.m[name] = time.Now().Add(placementGrace)
}

func (a *Agent) placementExpected(name string) bool {
	a.expected.mu.Lock()
	defer a.expected.mu.Unlock()
	until, ok := a.expected.m[name]
	if ok && time.Now().After(until) {
		delete(a.expected.m, name)
		return false
	}
	return ok
}

func (a *Agent) runFence() {
	i := 0
	tickEvery(a.ctx, fenceEvery, func() {
		i++
		a.fenceOnce(a.ctx)
		a.recordPending(a.ctx)
		a.settleOutgoingCopies(a.ctx)
		if i%20 == 0 {
			a.dropForgottenSnapshots()
		}
	})
}

// forgottenAge is how old a snapshot's data must be before it is removed for not being in the cluster's
// state: a snapshot is recorded in raft just after its node has written it.
const forgottenAge = 10 * time.Minute

// dropForgottenSnapshots removes the snapshot data this node holds that the cluster no longer catalogues
// (removed or dropped while the node was down), but never a snapshot waiting to be recorded (pending.go).
func (a *Agent) dropForgottenSnapshots() {
	ids, err := a.node.Snapshots()
	if err != nil {
		return
	}
	pending, err := a.node.PendingRecords()
	if err != nil {
		return
	}
	st := a.store.State()
	if st.Index == 0 {
		return // no state yet
	}
	for _, id := range ids {
		if _, ok := st.Snapshots[id]; ok {
			continue
		}
		if slices.ContainsFunc(pending, func(p node.PendingRecord) bool { return p.ID == id }) {
			continue
		}
		fi, err := os.Stat(a.node.SnapshotDir(id))
		if err != nil || time.Since(fi.ModTime()) < forgottenAge {
			continue
		}
		a.log.Info("removing the data of a snapshot the cluster no longer has", "id", id)
		if err := a.node.RemoveSnapshot(id); err != nil {
			a.log.Warn("removing a forgotten snapshot", "id", id, "err", err)
		}
	}
}

// fenceAtStart runs the fence once when a restarted agent has caught up with raft, before its API serves
// anything: a node that was down while the cluster restored its containers elsewhere (a failover) learns
// that from raft and removes its stale copies before it could run or report them. If raft does not catch
// up in time, the periodic fence does it later.
func (a *Agent) fenceAtStart(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := a.store.WaitCaughtUp(wctx); err != nil {
		a.log.Warn("raft has not caught up; the fence runs once it has", "err", err)
		return
	}
	a.fenceOnce(ctx)
}

// fenceOnce removes the local containers that the cluster places on another node.
func (a *Agent) fenceOnce(ctx context.Context) {
	st := a.store.State()
	for _, s := range strays(st, a.node.List(), a.cfg.Name, a.placementExpected) {
		a.log.Warn("removing a container that the cluster places on another node, so that it does not run in two places",
			"container", s.Config.Name, "placed_on", st.Containers[s.Config.Name].Node, "state", s.State)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := a.node.Remove(rctx, s.Config.Name, true)
		cancel()
		if err != nil {
			a.log.Error("could not remove a container placed on another node", "container", s.Config.Name, "err", err)
		}
	}
}

// strays returns the local containers of node self that the cluster's state places on another node it
// knows, leaving out those with an active migration, those busy with a CRIU operation, and those whose
// placement here is expected.
func strays(st *cluster.State, local []node.Container, self string, expected func(string) bool) []node.Container {
	var out []node.Container
	for _, c := range local {
		name := c.Config.Name
		placed, ok := st.Containers[name]
		if !ok || placed.Node == self || st.ActiveMigration(name) != nil || expected(name) {
			continue
		}
		switch c.State {
		case node.StateMigrating, node.StateCheckpointing, node.StateRestoring:
			continue
		}
		if _, known := st.Nodes[placed.Node]; !known {
			continue
		}
		out = append(out, c)
	}
	return out
}
