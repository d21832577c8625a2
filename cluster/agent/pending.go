package agent

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/checkpoint"
)

// A snapshot whose dump stopped its container (snapshot create --stop, a drain's --force) is all that is left
// of the container. Its node keeps the cluster's record of it beside the data until the cluster has it (see
// node.SnapshotOptions.Record); when the write of the agent that asked for the snapshot failed, or that agent
// stopped before it could write it, the node writes it itself. It survives restarts of either agent, and the
// sweep of forgotten snapshots leaves such a snapshot alone.

// pendingGrace is how long a node leaves the record to the agent that asked for the snapshot: that agent
// writes it at once, trying for a few seconds.
const pendingGrace = 10 * time.Second

type pendingStep int

const (
	pendingWait   pendingStep = iota // not yet: the asking agent may still write it, or there is no state yet
	pendingRecord                    // write the record
	pendingClear                     // the cluster has it, or the data is gone: drop the kept record
)

// pendingAction decides what to do with the record kept beside snapshot id, written age ago; have says
// whether the node still holds the snapshot's data.
func pendingAction(st *cluster.State, id string, have bool, age time.Duration) pendingStep {
	switch {
	case !have:
		return pendingClear
	case st == nil || st.Index == 0:
		return pendingWait
	case st.Snapshots[id] != nil:
		return pendingClear
	case age < pendingGrace:
		return pendingWait
	}
	return pendingRecord
}

// recordPending writes the kept records of this node's snapshots that the cluster does not have.
func (a *Agent) recordPending(ctx context.Context) {
	recs, err := a.node.PendingRecords()
	if err != nil {
		a.log.Warn("listing the snapshots waiting to be recorded", "err", err)
		return
	}
	if len(recs) == 0 {
		return
	}
	st := a.store.State()
	for _, pr := range recs {
		switch pendingAction(st, pr.ID, a.node.HasSnapshot(pr.ID), time.Since(pr.Written)) {
		case pendingClear:
			a.node.ClearPendingRecord(pr.ID)
		case pendingRecord:
			a.recordKept(ctx, pr)
		}
	}
}

// recordKept writes one kept record, and marks the container stopped if it still is here.
func (a *Agent) recordKept(ctx context.Context, pr node.PendingRecord) {
	var sn cluster.Snapshot
	if err := json.Unmarshal(pr.Data, &sn); err != nil || sn.ID != pr.ID {
		// Never a reason to drop the data: it is all that is left of a container. It stays, unlisted.
		a.log.Error("the record kept beside a snapshot that stopped its container cannot be read; the snapshot stays on this node unrecorded",
			"id", pr.ID, "err", err)
		return
	}
	m, err := checkpoint.ReadManifest(a.node.SnapshotDir(pr.ID))
	if err != nil {
		a.log.Warn("reading the manifest of a snapshot waiting to be recorded", "id", pr.ID, "err", err)
		return
	}
	sn.Node, sn.Size, sn.Created = a.cfg.Name, m.Size(), m.Created
	_, err = a.store.Apply(ctx, &cluster.PutSnapshot{Snapshot: sn})
	done := err == nil || a.recorded(ctx, err, sn.ID)
	if !done && errors.Is(err, cluster.ErrExists) && sn.Template != "" {
		// Its template name was taken meanwhile: the snapshot matters more than the name.
		a.log.Warn("recording a snapshot without its template name, which another snapshot took meanwhile", "id", sn.ID, "template", sn.Template)
		sn.Template = ""
		_, err = a.store.Apply(ctx, &cluster.PutSnapshot{Snapshot: sn})
		done = err == nil || a.recorded(ctx, err, sn.ID)
	}
	switch {
	case done:
		a.log.Info("recorded a snapshot that stopped its container, whose first record had failed", "id", sn.ID, "container", sn.Container)
		if c, gerr := a.node.Get(sn.Container); gerr == nil && c.State == node.StateStopped {
			d := cluster.DesiredStopped
			if _, uerr := a.store.Apply(ctx, &cluster.UpdateContainer{Name: sn.Container, Desired: &d}); uerr != nil {
				a.log.Warn("recording a stopped container", "container", sn.Container, "err", uerr)
			}
		}
		a.node.ClearPendingRecord(sn.ID)
	case errors.Is(err, cluster.ErrUnknownContainer):
		// The container was removed from the cluster since: its snapshot goes the way of forgotten data.
		a.log.Warn("a snapshot waiting to be recorded belongs to a container the cluster removed; it is dropped as forgotten", "id", sn.ID, "container", sn.Container)
		a.node.ClearPendingRecord(sn.ID)
	default:
		a.log.Warn("recording a snapshot that stopped its container failed; trying again", "id", sn.ID, "container", sn.Container, "err", err)
	}
}

// recorded reports, after a write of snapshot id failed with err, whether the cluster has the record all the
// same: an earlier write whose answer was lost, or its node's, took it.
func (a *Agent) recorded(ctx context.Context, err error, id string) bool {
	if !errors.Is(err, cluster.ErrExists) {
		return false
	}
	for range 20 {
		var in bool
		a.store.View(func(st *cluster.State) { in = st.Snapshots[id] != nil })
		if in {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}
