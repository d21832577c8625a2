package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/node/checkpoint"
)

// Snapshots as the cluster sees them: a snapshot is taken on the container's node, catalogued in raft and
// copied to other nodes over the agents' SSH streams, so that losing a node loses no snapshot. Changes are
// refused to viewers by the router.
func (a *Agent) registerSnapshots(rt *Router) {
	rt.handle("POST /v1/snapshots", a.snapshotCmd)
	rt.handle("GET /v1/snapshots", a.listSnapshots)
	rt.handle("POST /v1/snapshots/{id}/load", a.loadSnapshotCmd)
	rt.handle("DELETE /v1/snapshots/{id}", a.removeSnapshotCmd)
	rt.handle("POST /v1/clones", a.cloneCmd)
	a.registerSnapshotInternal(rt)
}

// maxSnapshotCopies bounds --copies.
const maxSnapshotCopies = 8

// longCmd runs on the leader (a follower passes the request on, so that every command sees the writes before
// it): it decodes the request body into req, then runs op, streaming its progress and ending with its result.
func longCmd[T any](rt *Router, w http.ResponseWriter, r *http.Request, req *T, op func(ctx context.Context, progress func(phase, detail string)) (any, error)) {
	body, err := readRequest(r, req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if rt.proxyToLeader(w, r, body) {
		return
	}
	ew := api.NewEventWriter(w)
	var mu sync.Mutex
	start := time.Now()
	progress := func(phase, detail string) {
		mu.Lock()
		defer mu.Unlock()
		_ = ew.Send(api.EventProgress, node.Progress{Phase: phase, Detail: detail, Elapsed: time.Since(start)})
	}
	res, err := op(context.WithoutCancel(r.Context()), progress)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		ew.Fail(err)
		return
	}
	_ = ew.Send(api.EventResult, res)
}

func (a *Agent) snapshotCmd(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotRequest
	longCmd(a.router, w, r, &req, func(ctx context.Context, p func(string, string)) (any, error) {
		return a.CreateSnapshot(ctx, req, false, p)
	})
}

// CreateSnapshot takes a snapshot of a running container on its node, records it in raft and copies it to
// req.Copies other nodes (default 1). A copy that cannot be made is reported as a warning, not an error: the
// snapshot exists on the nodes listed in its record. auto marks a periodic snapshot.
func (a *Agent) CreateSnapshot(ctx context.Context, req api.SnapshotRequest, auto bool, progress func(phase, detail string)) (*api.SnapshotResult, error) {
	if progress == nil {
		progress = func(string, string) {}
	}
	copies := 1
	if req.Copies != nil {
		copies = *req.Copies
	}
	if copies < 0 || copies > maxSnapshotCopies {
		return nil, fmt.Errorf("%w: --copies %d: use 0 to %d", node.ErrInvalid, copies, maxSnapshotCopies)
	}
	st := a.store.State()
	c, ok := st.Containers[req.Container]
	if !ok {
		return nil, fmt.Errorf("%w: no container named %q in the cluster (ferry ps lists them)", node.ErrNotFound, req.Container)
	}
	if req.Template != "" {
		if !node.ValidName(req.Template) {
			return nil, fmt.Errorf("%w: template name %q: use lower-case letters, digits, '.', '_' or '-'", node.ErrInvalid, req.Template)
		}
		if t := st.TemplateSnapshot(req.Template); t != nil {
			return nil, fmt.Errorf("%w: template %s exists (snapshot %s); remove it with ferry snapshot rm %s %s or pick another name", node.ErrExists, req.Template, t.ID, t.Container, t.ID)
		}
	}
	if n := st.Nodes[c.Node]; n == nil || n.Status != cluster.StatusAlive {
		return nil, fmt.Errorf("%w: container %s is on node %s, which is not alive; a snapshot needs its node", node.ErrState, c.Name, c.Node)
	}
	id := checkpoint.NewID(time.Now())
	sn := cluster.Snapshot{ID: id, Container: c.Name, Node: c.Node, Template: req.Template, Auto: auto, Image: c.Image,
		Config: c.Config.Clone()}
	take := takeRequest{Container: c.Name, Stop: req.Stop, Template: req.Template != ""}
	if req.Stop {
		take.Record = &sn // the node keeps it, and records the snapshot itself should this agent's write fail
	}
	progress("dumping", "CRIU dumps "+c.Name+" on "+c.Node)
	var rep node.SnapshotReport
	if err := a.callAgent(ctx, c.Node, "POST", "/v1/internal/snapshots/"+id+"/take", take, &rep); err != nil {
		return nil, err
	}
	sn.Size, sn.Created = rep.Size, rep.Created
	if err := a.recordSnapshot(ctx, sn, req.Stop); err != nil {
		if req.Stop {
			// The dump stopped the container: its data is all that is left of it, so it stays on the node,
			// which keeps the record beside it and writes it once the cluster takes writes (pending.go).
			return nil, fmt.Errorf("snapshot %s of %s was taken and the container stopped, but recording it failed: %w; its data stays on %s (snapshots/%s in its data directory), which records it once the cluster takes the write",
				id, c.Name, err, c.Node, id)
		}
		_ = a.callAgent(ctx, c.Node, "DELETE", "/v1/internal/snapshots/"+id, nil, nil)
		return nil, fmt.Errorf("recording snapshot %s: %w", id, err)
	}
	if req.Stop {
		if err := a.callAgent(ctx, c.Node, "POST", "/v1/internal/snapshots/"+id+"/recorded", nil, nil); err != nil {
			a.log.Warn("telling a node that its snapshot is recorded; it finds out by itself", "id", id, "node", c.Node, "err", err)
		}
		d := cluster.DesiredStopped
		if _, err := a.store.Apply(ctx, &cluster.UpdateContainer{Name: c.Name, Desired: &d}); err != nil {
			a.log.Warn("recording a stopped container", "container", c.Name, "err", err)
		}
	}
	res := &api.SnapshotResult{Report: &rep}
	start := time.Now()
	made := 0
	for _, target := range a.copyTargets(c.Node, c.Image) {
		if made == copies {
			break
		}
		progress("copying", "sending the snapshot to "+target)
		if err := a.copySnapshot(ctx, id, c.Node, target, c.Image, copyUse{Template: req.Template != ""}); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("no copy on %s: %v", target, err))
			continue // the next node, if there is one, takes its place
		}
		made++
	}
	if got := len(a.snapshotView(id).Copies); got < copies {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d of %d copies made (the cluster has too few alive nodes)", got, copies))
	}
	res.CopyTook = time.Since(start)
	res.Snapshot = a.snapshotView(id)
	a.log.Info("snapshot recorded", "id", id, "container", c.Name, "node", c.Node, "copies", res.Snapshot.Copies, "auto", auto)
	return res, nil
}

// recordSnapshot records sn in raft; when the dump stopped the container (stopped), it tries a few times,
// since the snapshot is then the container's only state.
func (a *Agent) recordSnapshot(ctx context.Context, sn cluster.Snapshot, stopped bool) error {
	tries := 1
	if stopped {
		tries = 5
	}
	var err error
	for i := range tries {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
		if a.fault("lose-snapshot-record") {
			err = fmt.Errorf("%w: recording a snapshot failed (injected fault)", cluster.ErrNoLeader)
			continue
		}
		_, err = a.store.Apply(ctx, &cluster.PutSnapshot{Snapshot: sn})
		if err == nil || a.recorded(ctx, err, sn.ID) {
			return nil
		}
	}
	return clusterError(err)
}

// copyTargets lists the alive nodes other than from that may take copies, in the order to try them: those
// holding the image first.
func (a *Agent) copyTargets(from, image string) []string {
	st := a.store.State()
	var hasImage []string
	if im, ok := st.Images[image]; ok {
		hasImage = im.Nodes
	}
	var cands []string
	for _, nd := range st.NodeList() {
		if nd.Name != from && nd.Status == cluster.StatusAlive {
			cands = append(cands, nd.Name)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		return slices.Contains(hasImage, cands[i]) && !slices.Contains(hasImage, cands[j])
	})
	return cands
}

// copySnapshot makes sure target holds snapshot id (and the image it needs), sending it from node from, and
// records the copy in raft. use says what the copy is for on target.
func (a *Agent) copySnapshot(ctx context.Context, id, from, target, image string, use copyUse) error {
	if err := (migrationNodes{a}).EnsureImage(ctx, migrate.Job{Image: image, Source: from, Target: target}); err != nil {
		return fmt.Errorf("sending image %s: %w", image, err)
	}
	var have haveResponse
	if err := a.callAgent(ctx, target, "GET", "/v1/internal/snapshots/"+id, nil, &have); err != nil {
		return err
	}
	if !have.Have {
		if err := a.callAgent(ctx, from, "POST", "/v1/internal/snapshots/"+id+"/push", pushRequest{Target: target, copyUse: use}, nil); err != nil {
			return err
		}
	}
	if err := a.addCopy(ctx, id, target); err != nil {
		return fmt.Errorf("%w: %w", errCopyUnrecorded, err)
	}
	return nil
}

// copyFromHolders copies snapshot sn to target (copySnapshot) from its alive holders, one after the other
// until one copy succeeds: a holder whose copy was damaged since it arrived is refused by target, and the
// next one may hold a good copy.
func (a *Agent) copyFromHolders(ctx context.Context, sn *cluster.Snapshot, target string, use copyUse) error {
	st := a.store.State()
	var errs []error
	for _, h := range sn.Holders() {
		if h == target || !a.alive(st, h) {
			continue
		}
		err := a.copySnapshot(ctx, sn.ID, h, target, sn.Image, use)
		if err == nil || errors.Is(err, errCopyUnrecorded) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, fmt.Errorf("from %s: %w", h, err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w: no alive node holds snapshot %s (it is on %v)", node.ErrState, sn.ID, sn.Holders())
	}
	return errors.Join(errs...)
}

// errCopyUnrecorded: a snapshot's copy reached its node and was accepted there, but could not be recorded in
// raft.
var errCopyUnrecorded = errors.New("its copy could not be recorded in the cluster")

// addCopy records that node holds a copy of snapshot id.
func (a *Agent) addCopy(ctx context.Context, id, nodeName string) error {
	if _, err := a.store.Apply(ctx, &cluster.AddSnapshotCopy{ID: id, Node: nodeName}); err != nil {
		if errors.Is(err, cluster.ErrUnknownSnapshot) {
			return fmt.Errorf("%w: snapshot %s was removed", node.ErrNotFound, id)
		}
		return clusterError(err)
	}
	return nil
}

func viewOf(sn *cluster.Snapshot) api.SnapshotView {
	return api.SnapshotView{ID: sn.ID, Container: sn.Container, Image: sn.Image, Node: sn.Node, Copies: slices.Clone(sn.Copies),
		Size: sn.Size, Created: sn.Created, Template: sn.Template, Auto: sn.Auto, Bad: sn.Bad, Reason: sn.Reason}
}

func (a *Agent) snapshotView(id string) api.SnapshotView {
	if sn, ok := a.store.State().Snapshots[id]; ok {
		return viewOf(sn)
	}
	return api.SnapshotView{ID: id}
}

func (a *Agent) listSnapshots(w http.ResponseWriter, r *http.Request) {
	if a.router.proxyToLeader(w, r, nil) {
		return
	}
	container := r.URL.Query().Get("container")
	st := a.store.State()
	out := []api.SnapshotView{}
	for _, sn := range st.Snapshots {
		if container == "" || sn.Container == container {
			out = append(out, viewOf(sn))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	api.WriteJSON(w, 200, out)
}

// findSnapshot returns the snapshot with that ID or template name.
func findSnapshot(st *cluster.State, idOrTemplate string) (*cluster.Snapshot, error) {
	if sn, ok := st.Snapshots[idOrTemplate]; ok {
		return sn, nil
	}
	if sn := st.TemplateSnapshot(idOrTemplate); sn != nil {
		return sn, nil
	}
	return nil, fmt.Errorf("%w: no snapshot or template %q in the cluster (ferry snapshot ls lists them)", node.ErrNotFound, idOrTemplate)
}

func (a *Agent) loadSnapshotCmd(w http.ResponseWriter, r *http.Request) {
	var req api.LoadSnapshotRequest
	id := r.PathValue("id")
	longCmd(a.router, w, r, &req, func(ctx context.Context, p func(string, string)) (any, error) {
		return a.loadSnapshot(ctx, id, req, p)
	})
}

// loadSnapshot takes the container back to snapshot id on its node, or, when that node is not alive, on a
// node that holds a copy.
func (a *Agent) loadSnapshot(ctx context.Context, id string, req api.LoadSnapshotRequest, progress func(string, string)) (*api.LoadSnapshotResult, error) {
	start := time.Now()
	st := a.store.State()
	sn, err := findSnapshot(st, id)
	if err != nil {
		return nil, err
	}
	if req.Container != "" && req.Container != sn.Container {
		return nil, fmt.Errorf("%w: snapshot %s is of container %s, not %s", node.ErrInvalid, sn.ID, sn.Container, req.Container)
	}
	target := ""
	if req.Node != "" {
		if !eligible(st, req.Node) {
			return nil, fmt.Errorf("%w: node %s is not alive and eligible (ferry node ls); choose another --node", node.ErrState, req.Node)
		}
		target = req.Node
	} else if c, ok := st.Containers[sn.Container]; ok && a.alive(st, c.Node) {
		target = c.Node
	} else {
		for _, h := range sn.Holders() {
			if a.alive(st, h) {
				target = h
				break
			}
		}
	}
	if target == "" {
		return nil, fmt.Errorf("%w: no alive node holds snapshot %s (it is on %v); bring one of them back", node.ErrState, sn.ID, sn.Holders())
	}
	progress("loading", fmt.Sprintf("restoring %s from snapshot %s on %s", sn.Container, sn.ID, target))
	rep, moved, err := a.loadOn(ctx, sn.ID, target)
	if err != nil {
		return nil, err
	}
	return &api.LoadSnapshotResult{Snapshot: sn.ID, Container: sn.Container, Node: target, MovedFrom: moved, Report: rep, Took: time.Since(start)}, nil
}

func (a *Agent) alive(st *cluster.State, name string) bool {
	n, ok := st.Nodes[name]
	return ok && n.Status == cluster.StatusAlive
}

// LoadSnapshotOn restores the container of snapshot snapshotID on nodeName from the snapshot's data, and makes
// nodeName the container's place in raft: its memory, writable layer and recorded configuration become the
// snapshot's. If nodeName holds no copy, one is sent from an alive node that does (with the image). If the
// container runs on nodeName, it is replaced; if it is not in the cluster any more, it is placed again.
//
// It is meant for evacuation: restoring a container whose node is gone from its latest snapshot. If the
// container's node is alive (and is not nodeName), the container is stopped there first; if that fails,
// nothing is loaded. A dead node's copy cannot be stopped: its agent removes it when it comes back (fence.go),
// so a node that is only cut off may run it until then. A snapshot that fails its checksums on nodeName is
// marked bad in raft and nothing is restored.
func (a *Agent) LoadSnapshotOn(ctx context.Context, snapshotID, nodeName string) error {
	_, _, err := a.loadOn(ctx, snapshotID, nodeName)
	return err
}

func (a *Agent) loadOn(ctx context.Context, id, target string) (*node.RestoreReport, string, error) {
	st := a.store.State()
	sn, ok := st.Snapshots[id]
	if !ok {
		return nil, "", fmt.Errorf("%w: no snapshot %q in the cluster (ferry snapshot ls lists them)", node.ErrNotFound, id)
	}
	if sn.Bad {
		return nil, "", fmt.Errorf("%w: snapshot %s is marked bad (%s) and is never loaded; pick another (ferry snapshot ls %s)", node.ErrRejected, id, sn.Reason, sn.Container)
	}
	if !slices.Contains(sn.Holders(), target) {
		if err := a.copyFromHolders(ctx, sn, target, copyUse{}); err != nil {
			return nil, "", fmt.Errorf("copying snapshot %s to %s: %w", id, target, err)
		}
	}
	markBad := func(err error) {
		if !errors.Is(err, node.ErrRejected) {
			return
		}
		if _, merr := a.store.Apply(ctx, &cluster.MarkSnapshotBad{ID: id, Reason: fmt.Sprintf("its copy on %s failed its checksums", target)}); merr != nil {
			a.log.Warn("marking a snapshot bad", "id", id, "err", merr)
		}
	}
	if a.runsElsewhere(sn.Container, target) {
		// The container is about to be stopped on its node: first make sure that target can load the
		// snapshot, so that a copy that fails its checksums there does not cost the running container.
		if err := a.callAgent(ctx, target, "POST", "/v1/internal/snapshots/"+id+"/verify", nil, nil); err != nil {
			markBad(err)
			return nil, "", fmt.Errorf("checking snapshot %s on %s before stopping %s on its node: %w; %s was not touched", id, target, sn.Container, err, sn.Container)
		}
	}
	if err := a.stopElsewhere(ctx, sn.Container, target); err != nil {
		return nil, "", err
	}
	var rep node.RestoreReport
	err := a.callAgent(ctx, target, "POST", "/v1/internal/snapshots/"+id+"/load", loadRequest{Container: sn.Container}, &rep)
	markBad(err)
	if err != nil {
		return nil, "", err
	}
	moved, err := a.placeLoaded(ctx, sn, target)
	return &rep, moved, err
}

// runsElsewhere reports whether the cluster places container name on an alive node other than target (which
// stopElsewhere stops).
func (a *Agent) runsElsewhere(name, target string) bool {
	st := a.store.State()
	c, ok := st.Containers[name]
	return ok && c.Node != target && a.alive(st, c.Node)
}

// stopElsewhere stops the container on its node when that node is alive and is not target, so that loading
// it on target does not make it run in two places. (A dead node's copy is removed by its agent when it comes
// back; see fence.go.)
func (a *Agent) stopElsewhere(ctx context.Context, name, target string) error {
	if !a.runsElsewhere(name, target) {
		return nil
	}
	c := a.store.State().Containers[name]
	var got node.Container
	err := a.router.call(ctx, c.Node, "POST", "/v1/containers/"+name+"/stop", api.StopRequest{Timeout: time.Second}, &got)
	if err != nil && !errors.Is(err, node.ErrNotFound) {
		return fmt.Errorf("stopping %s on %s before loading it on %s: %w", name, c.Node, target, err)
	}
	return nil
}

// placeLoaded records in raft that the container runs on target with the snapshot's configuration; it
// returns the node it was on before, if another.
func (a *Agent) placeLoaded(ctx context.Context, sn *cluster.Snapshot, target string) (string, error) {
	d := cluster.DesiredRunning
	cfg := sn.Config.Clone()
	c, ok := a.store.State().Containers[sn.Container]
	if !ok {
		_, err := a.store.Apply(ctx, &cluster.PlaceContainer{Container: cluster.Container{Name: sn.Container, Node: target, Image: sn.Image, Desired: d, Config: cfg}})
		return "", clusterError(err)
	}
	op := &cluster.UpdateContainer{Name: sn.Container, Desired: &d, Config: &cfg}
	moved := ""
	if c.Node != target {
		op.Node, moved = &target, c.Node
	}
	// The container runs on target now, and only there: unrecorded, the fence would take it for a stray
	// once its grace ends. A write of unknown outcome is tried again (it sets, so twice is once).
	var err error
	for try := range 5 {
		if try > 0 {
			time.Sleep(time.Second)
		}
		if _, err = a.store.Apply(ctx, op); err == nil || cluster.Rejected(err) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("recording the loaded container: %w", clusterError(err))
	}
	return moved, nil
}

// removeSnapshotCmd forgets a snapshot in raft and removes its data from every alive node that holds it
// (a node that is down keeps its files until the snapshot's data is removed there by hand).
func (a *Agent) removeSnapshotCmd(w http.ResponseWriter, r *http.Request) {
	if a.router.proxyToLeader(w, r, nil) {
		return
	}
	ctx := context.WithoutCancel(r.Context())
	st := a.store.State()
	sn, err := findSnapshot(st, r.PathValue("id"))
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if c := r.URL.Query().Get("container"); c != "" && c != sn.Container {
		api.WriteError(w, fmt.Errorf("%w: snapshot %s is of container %s, not %s", node.ErrInvalid, sn.ID, sn.Container, c))
		return
	}
	left, err := a.removeSnapshot(ctx, sn)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	api.WriteJSON(w, 200, api.RemoveSnapshotResult{Removed: sn.ID, LeftOn: left})
}

// removeSnapshot removes a snapshot's record and its data; it returns the nodes whose data could not be removed.
func (a *Agent) removeSnapshot(ctx context.Context, sn *cluster.Snapshot) ([]string, error) {
	if _, err := a.store.Apply(ctx, &cluster.RemoveSnapshot{ID: sn.ID}); err != nil {
		return nil, clusterError(err)
	}
	var left []string
	for _, h := range sn.Holders() {
		if err := a.callAgent(ctx, h, "DELETE", "/v1/internal/snapshots/"+sn.ID, nil, nil); err != nil {
			left = append(left, h)
			a.log.Warn("could not remove a snapshot's data", "id", sn.ID, "node", h, "err", err)
		}
	}
	return left, nil
}
