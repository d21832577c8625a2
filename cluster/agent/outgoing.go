package agent

import (
	"context"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
)

// A container that a migration froze on its source (node.StateMigrating) is thawed or removed by the
// migration's runner when the migration ends. A source that could not be told (it was dead or cut off, and
// the leader settled the job without it: migrate.Recover) settles its copy itself once it is back in touch
// with the cluster: removed if the cluster places the container elsewhere (the target took it, or a
// failover restored it from a snapshot), thawed if it is still placed here. Until then it stays frozen.

// outgoingGrace is how long after its job ended a frozen copy is left to the job's runner, which tells the
// source at once.
const outgoingGrace = 30 * time.Second

type outgoingStep int

const (
	outgoingWait   outgoingStep = iota // the migration is not over, or its runner may still tell the source
	outgoingThaw                       // over, and the container is placed here: it goes on here
	outgoingRemove                     // over, and the container is placed elsewhere (or nowhere)
)

// settleOutgoing decides what becomes of container name, frozen on node self by a migration, by the cluster's
// state st at now.
func settleOutgoing(st *cluster.State, name, self string, now time.Time) outgoingStep {
	if st == nil || st.Index == 0 || st.ActiveMigration(name) != nil || failoverPending(st, name, self) {
		return outgoingWait
	}
	for _, m := range st.Migrations {
		if m.Container == name && m.Source == self && now.Sub(m.UpdatedAt) < outgoingGrace {
			return outgoingWait
		}
	}
	if c, ok := st.Containers[name]; ok && c.Node == self {
		return outgoingThaw
	}
	return outgoingRemove
}

// settleOutgoingCopies settles this node's containers frozen by migrations that are over. It acts only when
// the node is in touch with a leader and has caught up with its state: a stale state could thaw a container
// that the cluster restored elsewhere meanwhile.
func (a *Agent) settleOutgoingCopies(ctx context.Context) {
	var frozen []string
	for _, c := range a.node.List() {
		if c.State == node.StateMigrating {
			frozen = append(frozen, c.Config.Name)
		}
	}
	if len(frozen) == 0 || a.store.OutOfTouch() > time.Second {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := a.store.WaitCaughtUp(wctx)
	cancel()
	if err != nil {
		return
	}
	st := a.store.State()
	for _, name := range frozen {
		step := settleOutgoing(st, name, a.cfg.Name, time.Now())
		if step == outgoingWait {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := a.node.FinishMigration(fctx, name, step == outgoingRemove)
		cancel()
		switch {
		case err != nil:
			a.log.Error("could not settle a container frozen by a migration that is over", "container", name, "err", err)
		case step == outgoingRemove:
			a.log.Warn("removed a container frozen by a migration that is over: the cluster places it elsewhere", "container", name)
		default:
			a.log.Warn("thawed a container frozen by a migration that was rolled back while this node was out of touch", "container", name)
		}
	}
}
