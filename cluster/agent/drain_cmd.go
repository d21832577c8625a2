package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/node/checkpoint"
)

// maxDrainParallel bounds --max-parallel: every migration freezes a container and streams it, and the hosts
// share their links and disks.
const maxDrainParallel = 16

// Drain reasons, recorded with the job.
const (
	reasonDrain       = "drain"
	reasonMaintenance = "maintenance"
	reasonShutdown    = "shutdown"
)

func (a *Agent) registerDrain(rt *Router) {
	rt.handle("POST /v1/drains", a.drainCmd)
	rt.handle("GET /v1/drains/{node}", a.drainStatus)
	rt.handle("POST /v1/nodes/{node}/undrain", a.undrainCmd)
	rt.handle("POST /v1/nodes/{node}/maintenance", a.maintenanceCmd)
}

// drainRequest is api.DrainRequest plus who asked (an agent evacuating itself says shutdown).
type drainRequest struct {
	api.DrainRequest
	Reason string `json:"reason,omitempty"`
}

func (r *drainRequest) check() error {
	switch {
	case r.Node == "":
		return fmt.Errorf("%w: name the node to drain: ferry node drain NODE", node.ErrInvalid)
	case r.Force && r.Deadline <= 0:
		return fmt.Errorf("%w: --force needs --deadline: it snapshots and stops what has not moved by then", node.ErrInvalid)
	case r.MaxParallel < 0 || r.MaxParallel > maxDrainParallel:
		return fmt.Errorf("%w: --max-parallel %d: use 1 to %d", node.ErrInvalid, r.MaxParallel, maxDrainParallel)
	case r.Deadline < 0:
		return fmt.Errorf("%w: --deadline %s: use a positive duration such as 10m", node.ErrInvalid, r.Deadline)
	}
	switch r.Reason {
	case "":
		r.Reason = reasonDrain
	case reasonDrain, reasonMaintenance, reasonShutdown:
	default:
		return fmt.Errorf("%w: drain reason %q is not drain, maintenance or shutdown", node.ErrInvalid, r.Reason)
	}
	if r.MaxParallel == 0 {
		r.MaxParallel = 1
	}
	return nil
}

// drainCmd is `ferry node drain NODE`: on the leader, it records the job and starts it, then follows it to its
// end with an event per step (or answers at once with --detach).
func (a *Agent) drainCmd(w http.ResponseWriter, r *http.Request) {
	var req drainRequest
	body, err := readRequest(r, &req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if err := req.check(); err != nil {
		api.WriteError(w, err)
		return
	}
	if a.router.proxyToLeader(w, r, body) {
		return
	}
	run, job, err := a.startDrain(r.Context(), req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if req.Detach {
		_ = api.NewEventWriter(w).Send(api.EventResult, drainReport(job))
		return
	}
	a.followDrain(w, r, run)
}

// startDrain records a drain of req.Node and starts running it here (the leader).
func (a *Agent) startDrain(ctx context.Context, req drainRequest) (*drainRun, *cluster.DrainJob, error) {
	st := a.store.State()
	if _, ok := st.Nodes[req.Node]; !ok {
		return nil, nil, fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, req.Node)
	}
	if d := st.ActiveDrain(req.Node); d != nil {
		return nil, nil, fmt.Errorf("%w: node %s is already draining (job %s, %s); follow it with ferry node drain --status %s",
			node.ErrState, req.Node, d.ID, d.Reason, req.Node)
	}
	now := time.Now()
	j := cluster.DrainJob{ID: checkpoint.NewID(now), Node: req.Node, State: cluster.JobPlanned, Reason: req.Reason, MaxParallel: req.MaxParallel, Force: req.Force}
	if req.Deadline > 0 {
		j.Deadline = now.Add(req.Deadline)
	}
	j.Items = drainItems(st, req.Node)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := a.store.Apply(wctx, &cluster.CreateDrain{Job: j}); err != nil {
		return nil, nil, clusterError(err)
	}
	a.log.Info("drain recorded; the node is ineligible", "drain", j.ID, "node", j.Node, "containers", len(j.Items), "reason", j.Reason)
	rec := a.store.State().Drains[j.ID]
	if rec == nil {
		return nil, nil, fmt.Errorf("%w: the drain job %s is not in the state after it was recorded", node.ErrUnavailable, j.ID)
	}
	run, _ := a.drains.start(a.ctx, newDrainRun(a, rec))
	return run, rec, nil
}

// followDrain streams the run's events until it ends, then the job's report as the result. If this agent
// stops leading meanwhile, the result is the job as it stands (unfinished; the new leader goes on with it).
func (a *Agent) followDrain(w http.ResponseWriter, r *http.Request, run *drainRun) {
	events, stop := run.subscribe()
	defer stop()
	ew := api.NewEventWriter(w)
	_ = ew.Send(api.EventProgress, api.DrainEvent{Node: run.node, Phase: "started", Message: "drain " + run.id})
	for {
		select {
		case ev := <-events:
			if err := ew.Send(api.EventProgress, ev); err != nil {
				return // the client went away; the drain goes on
			}
		case <-run.done:
			for len(events) > 0 {
				_ = ew.Send(api.EventProgress, <-events)
			}
			if j := run.job(); j != nil {
				_ = ew.Send(api.EventResult, drainReport(j))
			} else {
				ew.Fail(fmt.Errorf("%w: drain job %s is gone from the cluster's state", node.ErrNotFound, run.id))
			}
			return
		case <-r.Context().Done():
			return
		}
	}
}

// drainStatus is `ferry node drain --status NODE`: the node's latest drain job, from raft.
func (a *Agent) drainStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	st := a.store.State()
	if _, ok := st.Nodes[name]; !ok {
		api.WriteError(w, fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, name))
		return
	}
	j := st.LatestDrain(name)
	if j == nil {
		api.WriteError(w, fmt.Errorf("%w: node %s has not been drained (ferry node drain %s starts one)", node.ErrNotFound, name, name))
		return
	}
	api.WriteJSON(w, 200, drainReport(j))
}

// undrainCmd is `ferry node undrain NODE`: the node becomes eligible again; a drain still running is ended
// (migrations under way finish, no new one starts).
func (a *Agent) undrainCmd(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("node")
	st := a.store.State()
	n, ok := st.Nodes[name]
	if !ok {
		api.WriteError(w, fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, name))
		return
	}
	if n.Maintenance {
		api.WriteError(w, fmt.Errorf("%w: node %s is in maintenance; end it with ferry node maintenance off %s (which makes it eligible)", node.ErrState, name, name))
		return
	}
	a.answerNodeChange(w, r, name, false, "ended by undrain before it finished")
}

// maintenanceCmd is `ferry node maintenance on|off NODE`. On: the node is marked in maintenance and drained
// (the answer carries the drain job; follow it with ferry node drain --status). Off: maintenance ends, the
// node is eligible again, and a drain still running is ended.
func (a *Agent) maintenanceCmd(w http.ResponseWriter, r *http.Request) {
	var req api.MaintenanceRequest
	body, err := readRequest(r, &req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	name := r.PathValue("node")
	if _, ok := a.store.State().Nodes[name]; !ok {
		api.WriteError(w, fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, name))
		return
	}
	if !req.On {
		a.answerNodeChange(w, r, name, true, "ended by maintenance off before it finished")
		return
	}
	dr := drainRequest{DrainRequest: api.DrainRequest{Node: name, Deadline: req.Deadline, MaxParallel: req.MaxParallel}, Reason: reasonMaintenance}
	if err := dr.check(); err != nil {
		api.WriteError(w, err)
		return
	}
	if a.router.proxyToLeader(w, r, body) {
		return
	}
	on := true
	if _, err := a.store.Apply(r.Context(), &cluster.UpdateNode{Name: name, Maintenance: &on}); err != nil {
		api.WriteError(w, clusterError(err))
		return
	}
	a.log.Info("node in maintenance", "node", name)
	var rep *api.DrainReport
	if d := a.store.State().ActiveDrain(name); d != nil {
		rep = drainReport(d) // already draining: that drain is the maintenance's
	} else {
		_, job, err := a.startDrain(r.Context(), dr)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		rep = drainReport(job)
	}
	api.WriteJSON(w, 200, api.NodeChange{Node: a.nodeView(name), Drain: rep})
}

// answerNodeChange makes a node eligible (and, with endMaintenance, out of maintenance), ends its running
// drain with why, and answers with the node and that drain.
func (a *Agent) answerNodeChange(w http.ResponseWriter, r *http.Request, name string, endMaintenance bool, why string) {
	ctx := r.Context()
	var rep *api.DrainReport
	if d := a.store.State().ActiveDrain(name); d != nil {
		if _, err := a.store.Apply(ctx, &cluster.UpdateDrain{ID: d.ID, State: cluster.JobFailed, Error: why}); err != nil {
			api.WriteError(w, clusterError(err))
			return
		}
		a.log.Info("drain ended", "drain", d.ID, "node", name, "why", why)
	}
	yes, no := true, false
	op := &cluster.UpdateNode{Name: name, Eligible: &yes}
	if endMaintenance {
		op.Maintenance = &no
	}
	if _, err := a.store.Apply(ctx, op); err != nil {
		api.WriteError(w, clusterError(err))
		return
	}
	if d := a.store.State().LatestDrain(name); d != nil {
		rep = drainReport(d)
	}
	api.WriteJSON(w, 200, api.NodeChange{Node: a.nodeView(name), Drain: rep})
}

func (a *Agent) nodeView(name string) api.NodeView {
	st := a.store.State()
	n, ok := st.Nodes[name]
	if !ok {
		return api.NodeView{Name: name}
	}
	return api.NodeView{Name: n.Name, Addr: n.Addr, Status: string(n.Status), Eligible: n.Eligible, Maintenance: n.Maintenance,
		Containers: len(st.ContainersOn(n.Name)), FreeMemory: n.FreeMemory, Capacity: n.CapacityMemory,
		Features: cluster.FeatureList(n.Features), UpdatedAt: n.UpdatedAt}
}
