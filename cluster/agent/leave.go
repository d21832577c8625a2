package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

// leaveGossipWait bounds how long the leader waits to see a leaving node gone from gossip before it forgets
// the node (until then gossip would register it again).
const leaveGossipWait = 15 * time.Second

func (a *Agent) registerLeave(rt *Router) {
	rt.handle("POST /v1/nodes/{node}/leave", a.leaveCmd)
	rt.handle("POST /v1/internal/leave", a.agentsOnly(a.leaveSelf))
}

// Left is closed when this node has left the cluster (ferry node leave): the agent should then Close and
// exit.
func (a *Agent) Left() <-chan struct{} { return a.left }

// leaveCmd is `ferry node leave NODE`, run by the leader: a node that holds nothing leaves the cluster. Its
// agent leaves gossip and stops, and the node is taken out of raft's voters and out of the cluster's state.
// A node that is dead is only forgotten. Starting its agent again later joins it again.
func (a *Agent) leaveCmd(w http.ResponseWriter, r *http.Request) {
	if a.router.proxyToLeader(w, r, nil) {
		return
	}
	name := r.PathValue("node")
	if err := leaveRefusal(a.store.State(), name); err != nil {
		api.WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	if name == a.cfg.Name {
		// The leader leaves: another voter leads first, and the request goes on there.
		if err := a.store.TransferLeadership(ctx); err != nil {
			api.WriteError(w, fmt.Errorf("%w: %s leads the cluster and could not hand that over before leaving: %v", node.ErrUnavailable, name, err))
			return
		}
		if !a.router.proxyToLeader(w, r, nil) {
			api.WriteError(w, fmt.Errorf("%w: %s still leads after handing leadership over; try again", node.ErrUnavailable, name))
		}
		return
	}
	no := false
	if _, err := a.store.Apply(ctx, &cluster.UpdateNode{Name: name, Eligible: &no}); err != nil {
		api.WriteError(w, clusterError(err))
		return
	}
	n := a.store.State().Nodes[name]
	if n.Status == cluster.StatusAlive || n.Status == cluster.StatusSuspect {
		if err := a.callAgent(ctx, name, http.MethodPost, "/v1/internal/leave", nil, nil); err != nil {
			api.WriteError(w, fmt.Errorf("%w: node %s did not leave: %v; it takes no new work until ferry node undrain %s",
				node.ErrUnavailable, name, err, name))
			return
		}
		gone := waitFor(ctx, leaveGossipWait, func() bool {
			return a.memberStatus(name) != cluster.StatusAlive
		})
		if !gone {
			a.log.Warn("a leaving node still looks alive in gossip; forgetting it anyway", "left", name)
		}
	}
	if err := a.store.RemoveServer(ctx, name); err != nil {
		api.WriteError(w, fmt.Errorf("%w: taking %s out of raft: %v", node.ErrUnavailable, name, err))
		return
	}
	if _, err := a.store.Apply(ctx, &cluster.RemoveNode{Name: name}); err != nil {
		api.WriteError(w, clusterError(err))
		return
	}
	a.log.Info("node left the cluster", "left", name)
	api.WriteJSON(w, 200, api.NodeView{Name: name, Addr: n.Addr, Status: string(cluster.StatusLeft)})
}

// leaveRefusal says why name cannot leave now, or nil.
func leaveRefusal(st *cluster.State, name string) error {
	if _, ok := st.Nodes[name]; !ok {
		return fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, name)
	}
	if cs := st.ContainersOn(name); len(cs) > 0 {
		names := make([]string, 0, len(cs))
		for _, c := range cs {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return fmt.Errorf("%w: node %s still holds %d container(s) (%s); move them first with ferry node drain %s, or remove them",
			node.ErrState, name, len(cs), strings.Join(names, ", "), name)
	}
	if d := st.ActiveDrain(name); d != nil {
		return fmt.Errorf("%w: node %s is draining (job %s); wait for it (ferry node drain --status %s)", node.ErrState, name, d.ID, name)
	}
	for _, m := range st.Migrations {
		if !m.State.Final() && (m.Source == name || m.Target == name) {
			return fmt.Errorf("%w: migration %s of %s involves node %s and is under way; wait for it", node.ErrState, m.ID, m.Container, name)
		}
	}
	var only []string
	for _, sn := range st.Snapshots {
		if !sn.Bad && !slices.ContainsFunc(sn.Holders(), func(h string) bool { return h != name }) {
			only = append(only, sn.Container+" "+sn.ID)
		}
	}
	if len(only) > 0 {
		slices.Sort(only)
		return fmt.Errorf("%w: node %s holds the only copy of snapshot(s) %s; remove them (ferry snapshot rm NAME ID) or keep the node",
			node.ErrState, name, strings.Join(only, ", "))
	}
	return nil
}

// leaveSelf is the leaving node's part, asked by the leader: it answers, then leaves gossip and signals Left.
func (a *Agent) leaveSelf(w http.ResponseWriter, r *http.Request) {
	if n := len(a.node.List()); n > 0 {
		api.WriteError(w, fmt.Errorf("%w: node %s still runs %d container(s)", node.ErrState, a.cfg.Name, n))
		return
	}
	api.WriteJSON(w, 200, struct{}{})
	a.leaveOnce.Do(func() {
		go func() {
			a.log.Info("leaving the cluster (ferry node leave)")
			if err := a.members.Leave(5 * time.Second); err != nil {
				a.log.Warn("leaving gossip", "err", err)
			}
			close(a.left)
		}()
	})
}

func (a *Agent) memberStatus(name string) cluster.NodeStatus {
	for _, m := range a.members.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return cluster.StatusLeft
}

// waitFor polls cond every 100 ms until it holds (true) or d or ctx ends (false).
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}
