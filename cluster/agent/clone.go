package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

// maxClones bounds --count.
const maxClones = 100

func (a *Agent) cloneCmd(w http.ResponseWriter, r *http.Request) {
	var req api.CloneRequest
	longCmd(a.router, w, r, &req, func(ctx context.Context, p func(string, string)) (any, error) {
		return a.clone(ctx, req, p)
	})
}

// clone starts req.Count new containers from one snapshot: the snapshot is sent once to each node that needs
// it (with its image) and kept there as a cached copy; each node restores its clones, all at once, as soon as
// it holds the snapshot.
func (a *Agent) clone(ctx context.Context, req api.CloneRequest, progress func(string, string)) (*api.CloneResult, error) {
	start := time.Now()
	if req.Count == 0 {
		req.Count = 1
	}
	switch {
	case req.Count < 0 || req.Count > maxClones:
		return nil, fmt.Errorf("%w: --count %d: use 1 to %d", node.ErrInvalid, req.Count, maxClones)
	case req.Node != "" && req.Spread:
		return nil, fmt.Errorf("%w: --node and --spread exclude each other; give one", node.ErrInvalid)
	case (req.Container == "") == (req.Snapshot == ""):
		return nil, fmt.Errorf("%w: name a container or give --snapshot ID (one of them)", node.ErrInvalid)
	case req.NamePrefix != "" && !node.ValidName(req.NamePrefix+"-1"):
		return nil, fmt.Errorf("%w: --name-prefix %q: use lower-case letters, digits, '.', '_' or '-'", node.ErrInvalid, req.NamePrefix)
	}
	sn, err := a.cloneSource(ctx, req, progress)
	if err != nil {
		return nil, err
	}
	if sn.Bad {
		return nil, fmt.Errorf("%w: snapshot %s is marked bad (%s); clone another", node.ErrRejected, sn.ID, sn.Reason)
	}
	targets, err := cloneTargets(a.store.State(), sn, req)
	if err != nil {
		return nil, err
	}
	res := &api.CloneResult{Snapshot: sn.ID, Source: sn.Container}
	prefix := req.NamePrefix
	if prefix == "" {
		prefix = sn.Container + "-clone"
	}
	names := a.freeNames(prefix, len(targets))
	// The snapshot goes to each node that lacks it while that node's clones are placed and asked for: the
	// node starts them the moment its copy is in (node.Agent.AwaitSnapshot), not after another round trip.
	copies, err := a.spreadSnapshot(ctx, sn, targets, progress)
	if err != nil {
		return nil, err
	}
	progress("starting", fmt.Sprintf("%d clone(s) of snapshot %s", len(names), sn.ID))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, await := ctx, false
			cp := copies.to(targets[i])
			if cp != nil {
				cctx, await = cp.ctx, true
			}
			rep, err := a.startClone(ctx, cctx, sn, name, targets[i], await)
			if err != nil && cp != nil {
				if cerr := cp.wait(); cerr != nil {
					err = cerr // the copy failed: that is why
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed = append(res.Failed, fmt.Sprintf("%s on %s: %v", name, targets[i], err))
				return
			}
			res.Clones = append(res.Clones, rep)
			progress("started", fmt.Sprintf("%s on %s in %s", name, targets[i], rep.Took.Round(time.Millisecond)))
		}()
	}
	wg.Wait()
	copies.finish(res)
	slices.SortFunc(res.Clones, func(x, y *node.CloneReport) int {
		if x.Container < y.Container {
			return -1
		}
		return 1
	})
	res.Took = time.Since(start)
	if len(res.Clones) == 0 {
		return nil, fmt.Errorf("%w: no clone started: %s", node.ErrState, strings.Join(res.Failed, "; "))
	}
	return res, nil
}

// cloneSource finds the snapshot to clone: by ID or template name, or for a container, its template of the
// same name, else a new snapshot of the running container (kept on its node only).
func (a *Agent) cloneSource(ctx context.Context, req api.CloneRequest, progress func(string, string)) (*cluster.Snapshot, error) {
	st := a.store.State()
	if req.Snapshot != "" {
		return findSnapshot(st, req.Snapshot)
	}
	if sn := st.TemplateSnapshot(req.Container); sn != nil {
		return sn, nil
	}
	zero := 0
	res, err := a.CreateSnapshot(ctx, api.SnapshotRequest{Container: req.Container, Copies: &zero}, false, progress)
	if err != nil {
		return nil, err
	}
	sn, ok := a.store.State().Snapshots[res.Snapshot.ID]
	if !ok {
		return nil, fmt.Errorf("%w: snapshot %s vanished", node.ErrNotFound, res.Snapshot.ID)
	}
	return sn, nil
}

// cloneTargets returns the node of each clone: all on req.Node, spread over the alive nodes (those holding
// the snapshot first), or all on an alive node that holds the snapshot.
func cloneTargets(st *cluster.State, sn *cluster.Snapshot, req api.CloneRequest) ([]string, error) {
	var pool []string
	switch {
	case req.Node != "":
		n, ok := st.Nodes[req.Node]
		if !ok {
			return nil, fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, req.Node)
		}
		if n.Status != cluster.StatusAlive || !n.Eligible || n.Maintenance {
			return nil, fmt.Errorf("%w: node %s is %s%s; choose another", node.ErrState, n.Name, n.Status, map[bool]string{true: "", false: " and not eligible"}[n.Eligible])
		}
		pool = []string{n.Name}
	case req.Spread:
		for _, h := range sn.Holders() {
			if eligible(st, h) {
				pool = append(pool, h)
			}
		}
		for _, n := range st.NodeList() {
			if eligible(st, n.Name) && !slices.Contains(pool, n.Name) {
				pool = append(pool, n.Name)
			}
		}
	default:
		for _, h := range sn.Holders() {
			if eligible(st, h) {
				pool = []string{h}
				break
			}
		}
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("%w: no alive, eligible node to start clones on (snapshot %s is on %v); give --node", node.ErrState, sn.ID, sn.Holders())
	}
	// In turn over the pool, as `ferry run` places: a node takes a clone only while it has the memory the
	// clone may use (its --memory, when the container had one) beside what it has placed.
	mem := sn.Config.MemoryBytes
	left := map[string]int64{}
	for _, n := range pool {
		left[n] = st.Nodes[n].FreeMemory - st.ReservedMemory(n)
	}
	out := make([]string, 0, req.Count)
	for i := 0; len(out) < req.Count && i < req.Count*len(pool); i++ {
		n := pool[i%len(pool)]
		if mem > 0 && left[n] < mem {
			continue
		}
		left[n] -= mem
		out = append(out, n)
	}
	if len(out) < req.Count {
		return nil, fmt.Errorf("%w: %d of %d clones fit: each may use %d MiB (the --memory of %s) and %v have not the room for more; lower --count, use --spread, or free memory",
			node.ErrState, len(out), req.Count, mem>>20, sn.Container, pool)
	}
	return out, nil
}

func eligible(st *cluster.State, name string) bool {
	n, ok := st.Nodes[name]
	return ok && n.Status == cluster.StatusAlive && n.Eligible && !n.Maintenance
}

// snapshotCopy is one node's copy of a snapshot on its way (spreadSnapshot): ctx ends when it failed, so that
// the clones waiting for it on that node give up.
type snapshotCopy struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	at     time.Time // when it was over
	// delivered: the data is on the node, checked, even if err says its copy could not be recorded in raft;
	// the clones waiting for it go ahead.
	delivered bool
}

// wait returns the copy's outcome once it is over.
func (c *snapshotCopy) wait() error {
	<-c.done
	return c.err
}

// snapshotCopies are the copies one clone command sends, by target node.
type snapshotCopies struct {
	start time.Time
	by    map[string]*snapshotCopy
	order []string
}

// to returns the copy on its way to node, or nil if that node holds the snapshot.
func (cs *snapshotCopies) to(node string) *snapshotCopy { return cs.by[node] }

// finish waits for every copy and records the ones that arrived, and how long sending took, in res.
func (cs *snapshotCopies) finish(res *api.CloneResult) {
	var last time.Time
	for _, t := range cs.order {
		c := cs.by[t]
		err := c.wait()
		if err == nil || c.delivered {
			res.CopiedTo = append(res.CopiedTo, t)
			if c.at.After(last) {
				last = c.at
			}
		}
		if err != nil && c.delivered {
			res.Warnings = append(res.Warnings, err.Error())
		}
		c.cancel()
	}
	if !last.IsZero() {
		res.CopyTook = last.Sub(cs.start)
	}
}

// spreadSnapshot starts sending the snapshot, once, to every target that lacks it, in parallel, and returns
// at once; an error only when no node can send it.
func (a *Agent) spreadSnapshot(ctx context.Context, sn *cluster.Snapshot, targets []string, progress func(string, string)) (*snapshotCopies, error) {
	st := a.store.State()
	from := ""
	for _, h := range sn.Holders() {
		if a.alive(st, h) {
			from = h
			break
		}
	}
	cs := &snapshotCopies{start: time.Now(), by: map[string]*snapshotCopy{}}
	for _, t := range targets {
		if !slices.Contains(sn.Holders(), t) && !slices.Contains(cs.order, t) {
			cs.order = append(cs.order, t)
		}
	}
	if len(cs.order) == 0 {
		return cs, nil
	}
	if from == "" {
		return nil, fmt.Errorf("%w: no alive node holds snapshot %s (it is on %v)", node.ErrState, sn.ID, sn.Holders())
	}
	for _, t := range cs.order {
		c := &snapshotCopy{done: make(chan struct{})}
		c.ctx, c.cancel = context.WithCancel(ctx)
		cs.by[t] = c
		go func() {
			defer close(c.done)
			progress("copying", fmt.Sprintf("sending snapshot %s from %s to %s", sn.ID, from, t))
			err := a.copyFromHolders(ctx, sn, t, copyUse{Clones: countOf(targets, t), Template: sn.Template != ""})
			switch {
			case errors.Is(err, errCopyUnrecorded):
				// The node holds the data and starts its clones; only the catalogue misses the copy (the
				// node's forgotten-snapshot sweep removes the data in time).
				c.err, c.delivered = fmt.Errorf("snapshot %s is on %s, but %w", sn.ID, t, err), true
			case err != nil:
				c.err = fmt.Errorf("sending snapshot %s to %s: %w", sn.ID, t, err)
				c.cancel()
			}
			c.at = time.Now()
		}()
	}
	return cs, nil
}

// countOf counts the elements of s equal to v.
func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// freeNames returns n container names PREFIX-K that the cluster does not use, K counting up from 1.
func (a *Agent) freeNames(prefix string, n int) []string {
	st := a.store.State()
	var out []string
	for k := 1; len(out) < n; k++ {
		name := fmt.Sprintf("%s-%d", prefix, k)
		if _, used := st.Containers[name]; !used {
			out = append(out, name)
		}
	}
	return out
}

// startClone reserves the clone's name and placement in raft, then has the node start it; on failure the
// placement is removed again. With await, the snapshot's copy is still on its way to target, which starts
// the clone once it is in; call ends when that copy failed (it is not used for the placement, so that a
// failed copy does not cut a placement short that raft may have committed anyway).
func (a *Agent) startClone(ctx, call context.Context, sn *cluster.Snapshot, name, target string, await bool) (*node.CloneReport, error) {
	c := cluster.Container{Name: name, Node: target, Image: sn.Image, Desired: cluster.DesiredRunning, Config: sn.Config.Clone()}
	c.Config.SnapshotEvery, c.Config.Keep = 0, 0
	unplace := func() {
		if _, err := a.store.Apply(context.WithoutCancel(ctx), &cluster.RemoveContainer{Name: name}); err != nil && !errors.Is(err, cluster.ErrUnknownContainer) {
			a.log.Warn("removing a failed clone's placement", "container", name, "err", err)
		}
	}
	if _, err := a.store.Apply(ctx, &cluster.PlaceContainer{Container: c}); err != nil {
		if !cluster.Rejected(err) {
			unplace() // it may have been committed all the same
		}
		return nil, clusterError(err)
	}
	var rep node.CloneReport
	if err := a.callAgent(call, target, "POST", "/v1/internal/snapshots/"+sn.ID+"/clone", cloneHereRequest{Name: name, Await: await}, &rep); err != nil {
		unplace()
		return nil, err
	}
	return &rep, nil
}
