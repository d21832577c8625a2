package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/checkpoint"
)

// Internal, agent-to-agent steps of snapshots and clones: the agent that serves the operator's request calls
// them on the nodes that take, hold, load or clone a snapshot.
func (a *Agent) registerSnapshotInternal(rt *Router) {
	rt.handle("POST /v1/internal/snapshots/{id}/take", a.agentsOnly(a.takeSnapshot))
	rt.handle("POST /v1/internal/snapshots/{id}/push", a.agentsOnly(a.pushSnapshotTo))
	rt.handle("POST /v1/internal/snapshots/{id}/load", a.agentsOnly(a.loadSnapshotHere))
	rt.handle("POST /v1/internal/snapshots/{id}/verify", a.agentsOnly(a.verifySnapshotHere))
	rt.handle("POST /v1/internal/snapshots/{id}/clone", a.agentsOnly(a.cloneHere))
	rt.handle("GET /v1/internal/snapshots/{id}", a.agentsOnly(a.haveSnapshot))
	rt.handle("DELETE /v1/internal/snapshots/{id}", a.agentsOnly(a.dropSnapshot))
	rt.handle("POST /v1/internal/snapshots/{id}/recorded", a.agentsOnly(a.snapshotRecorded))
}

type takeRequest struct {
	Container string `json:"container"`
	Stop      bool   `json:"stop,omitempty"`
	Template  bool   `json:"template,omitempty"` // clones will be made of it
	// Record, with Stop, is the cluster's record of the snapshot (without its size and time), which the node
	// keeps beside it until the cluster has it: it writes it itself should the caller's write fail.
	Record *cluster.Snapshot `json:"record,omitempty"`
}

type loadRequest struct {
	Container string `json:"container"`
}

type cloneHereRequest struct {
	Name string `json:"name"`
	// Await: the snapshot's copy is on its way here; start the clone once it is in (until the caller gives up).
	Await bool `json:"await,omitempty"`
}

type haveResponse struct {
	Have bool `json:"have"`
}

func (a *Agent) takeSnapshot(w http.ResponseWriter, r *http.Request) {
	var req takeRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	opts := node.SnapshotOptions{ID: r.PathValue("id"), Stop: req.Stop, Template: req.Template}
	if req.Stop && req.Record != nil {
		b, err := json.Marshal(req.Record)
		if err != nil {
			answer(w, nil, fmt.Errorf("%w: snapshot record: %v", node.ErrInvalid, err))
			return
		}
		opts.Record = b
	}
	rep, err := a.node.Snapshot(context.WithoutCancel(r.Context()), req.Container, opts, nil)
	answer(w, rep, err)
}

// pushSnapshotTo sends this node's copy of a snapshot to another node, which checks it before keeping it.
func (a *Agent) pushSnapshotTo(w http.ResponseWriter, r *http.Request) {
	var req pushRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	id := r.PathValue("id")
	ctx := context.WithoutCancel(r.Context())
	if _, err := a.node.OpenSnapshot(id); err != nil {
		answer(w, nil, err)
		return
	}
	addr, err := a.router.nodeAddr(req.Target)
	if err != nil {
		answer(w, nil, err)
		return
	}
	// In the pieces its manifest sums, so that the receiver's checks of each piece prove the files.
	var chunk int64
	if m, err := checkpoint.ReadManifest(a.node.SnapshotDir(id)); err == nil {
		chunk = m.ChunkSize
	}
	st, err := a.sendDir(ctx, addr, streamHeader{Kind: streamSnapshot, ID: id, copyUse: req.copyUse}, a.node.SnapshotDir(id), chunk, nil)
	answer(w, st, err)
}

func (a *Agent) loadSnapshotHere(w http.ResponseWriter, r *http.Request) {
	var req loadRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	a.expectPlacement(req.Container)
	rep, err := a.node.LoadSnapshot(context.WithoutCancel(r.Context()), req.Container, r.PathValue("id"), nil)
	answer(w, rep, err)
}

// verifySnapshotHere checks every file of a snapshot this node holds against its manifest (ErrRejected when
// one does not match).
func (a *Agent) verifySnapshotHere(w http.ResponseWriter, r *http.Request) {
	err := a.node.VerifySnapshot(r.Context(), r.PathValue("id"))
	answer(w, map[string]bool{"ok": err == nil}, err)
}

func (a *Agent) cloneHere(w http.ResponseWriter, r *http.Request) {
	var req cloneHereRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	if req.Await {
		if err := a.node.AwaitSnapshot(r.Context(), r.PathValue("id")); err != nil {
			answer(w, nil, err)
			return
		}
	}
	rep, err := a.node.Clone(context.WithoutCancel(r.Context()), r.PathValue("id"), req.Name, nil)
	if err == nil && r.Context().Err() != nil {
		// The caller gave up meanwhile (its copy failed, its connection broke): it removes the clone's
		// placement, so the clone must not stay here, unknown to the cluster.
		a.log.Warn("removing a clone its caller gave up on while it started", "container", req.Name)
		if rerr := a.node.Remove(context.WithoutCancel(r.Context()), req.Name, true); rerr != nil {
			a.log.Error("could not remove a clone its caller gave up on", "container", req.Name, "err", rerr)
		}
		err = fmt.Errorf("%w: the clone's caller gave up: %w", node.ErrState, context.Cause(r.Context()))
	}
	answer(w, rep, err)
}

func (a *Agent) haveSnapshot(w http.ResponseWriter, r *http.Request) {
	answer(w, haveResponse{Have: a.node.HasSnapshot(r.PathValue("id"))}, nil)
}

// snapshotRecorded tells the node that the cluster has the record it kept beside a snapshot (pending.go):
// dropped at once, it cannot bring back a snapshot removed in the seconds before the node would see it.
func (a *Agent) snapshotRecorded(w http.ResponseWriter, r *http.Request) {
	a.node.ClearPendingRecord(r.PathValue("id"))
	answer(w, map[string]bool{"ok": true}, nil)
}

func (a *Agent) dropSnapshot(w http.ResponseWriter, r *http.Request) {
	err := a.node.RemoveSnapshot(r.PathValue("id"))
	answer(w, map[string]bool{"ok": err == nil}, err)
}
