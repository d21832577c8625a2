package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/node/images"
)

// askTimeout bounds how long a list waits for one node's answer.
const askTimeout = 3 * time.Second

func (rt *Router) nodes(w http.ResponseWriter, r *http.Request) {
	st := rt.store.State()
	roles := map[string]string{}
	if servers, err := rt.store.Servers(); err == nil {
		for _, s := range servers {
			roles[s.Name] = s.Role()
		}
	}
	leader, _ := rt.store.Leader()
	var out []api.NodeView
	for _, n := range st.NodeList() {
		role := roles[n.Name]
		if role == "" {
			role = "none"
		}
		if n.Name == leader {
			role = "leader"
		}
		out = append(out, api.NodeView{
			Name: n.Name, Addr: n.Addr, Status: string(n.Status), RaftRole: role, Eligible: n.Eligible,
			Maintenance: n.Maintenance, Containers: len(st.ContainersOn(n.Name)), FreeMemory: n.FreeMemory,
			Capacity: n.CapacityMemory, Features: cluster.FeatureList(n.Features), UpdatedAt: n.UpdatedAt,
		})
	}
	if out == nil {
		out = []api.NodeView{}
	}
	api.WriteJSON(w, 200, out)
}

func (rt *Router) nodeInfo(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("node")
	if name == "" {
		name = rt.self
	}
	r.URL.RawQuery = ""
	rt.toNode(w, r, name)
}

// containers lists every container of the cluster: placement and desired state from raft, the rest from each
// node's own list, asked of all nodes in parallel. A node that does not answer in time is reported unreachable.
func (rt *Router) containers(w http.ResponseWriter, r *http.Request) {
	st := rt.store.State()
	lists := rt.askAll(r.Context(), st, "/v1/containers")
	byNode := map[string]map[string]node.Container{}
	for n, raw := range lists {
		var cs []node.Container
		if json.Unmarshal(raw, &cs) != nil {
			continue
		}
		byNode[n] = map[string]node.Container{}
		for _, c := range cs {
			byNode[n][c.Config.Name] = c
		}
	}
	out := []api.ContainerView{}
	for _, c := range st.ContainerList() {
		v := api.ContainerView{Node: c.Node, Desired: string(c.Desired)}
		got, reachable := byNode[c.Node]
		if local, ok := got[c.Name]; ok {
			v.Container, v.Reachable = local, true
			delete(got, c.Name)
		} else {
			v.Container = node.Container{Config: node.ContainerConfig{Name: c.Name, Image: c.Image, Args: c.Config.Args}}
			v.Reachable = reachable
			v.State = "unknown"
			if reachable {
				v.State, v.Note = "missing", "the cluster places it on "+c.Node+" but that node does not have it"
			} else {
				v.Note = "node " + c.Node + " did not answer"
			}
		}
		out = append(out, v)
	}
	for n, left := range byNode { // on a node but not in the cluster's state
		for _, c := range left {
			c.Note = "not in the cluster's state (left over on this node)"
			out = append(out, api.ContainerView{Container: c, Node: n, Reachable: true})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Config.Name != out[j].Config.Name {
			return out[i].Config.Name < out[j].Config.Name
		}
		return out[i].Node < out[j].Node
	})
	api.WriteJSON(w, 200, out)
}

// askAll GETs path from every node that is not dead or gone, in parallel, and returns the answers by node.
func (rt *Router) askAll(ctx context.Context, st *cluster.State, path string) map[string]json.RawMessage {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	var mu sync.Mutex
	out := map[string]json.RawMessage{}
	var wg sync.WaitGroup
	for _, n := range st.NodeList() {
		if n.Name != rt.self && (n.Status == cluster.StatusDead || n.Status == cluster.StatusLeft) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var raw json.RawMessage
			if err := rt.call(ctx, n.Name, "GET", path, nil, &raw); err == nil {
				mu.Lock()
				out[n.Name] = raw
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// run places a new container: on the leader, the scheduler picks a node (or takes the pinned one), the
// placement is written to raft (which also reserves the name), and the node is asked to run it. If the node
// fails, the placement is removed again.
func (rt *Router) run(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	body, err := readRequest(r, &req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if !node.ValidName(req.Name) {
		api.WriteError(w, fmt.Errorf("%w: container name %q: use lower-case letters, digits, '.', '_' or '-' (at most 63)", node.ErrInvalid, req.Name))
		return
	}
	if err := checkPeriodic(req.SnapshotEvery, req.Keep); err != nil {
		api.WriteError(w, err)
		return
	}
	if rt.proxyToLeader(w, r, body) {
		return
	}
	target, err := rt.place(req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	ctx := r.Context()
	c := cluster.Container{Name: req.Name, Node: target, Image: req.Image, Desired: cluster.DesiredRunning,
		Config: cluster.ContainerConfig{Args: req.Args, Env: req.Env, MemoryBytes: req.MemoryBytes, Net: req.Net,
			SnapshotEvery: req.SnapshotEvery, Keep: req.Keep, NoMigrate: req.NoMigrate}}
	if _, err := rt.store.Apply(ctx, &cluster.PlaceContainer{Container: c}); err != nil {
		api.WriteError(w, clusterError(err))
		return
	}
	var got node.Container
	if err := rt.call(ctx, target, "POST", "/v1/containers", req.RunRequest, &got); err != nil {
		if _, rerr := rt.store.Apply(context.WithoutCancel(ctx), &cluster.RemoveContainer{Name: req.Name}); rerr != nil {
			rt.log.Warn("removing a failed placement", "container", req.Name, "err", rerr)
		}
		api.WriteError(w, fmt.Errorf("running %s on node %s: %w", req.Name, target, err))
		return
	}
	api.WriteJSON(w, http.StatusCreated, api.ContainerView{Container: got, Node: target, Desired: string(cluster.DesiredRunning), Reachable: true})
}

// place picks the node for a new container: only nodes that hold its image qualify.
func (rt *Router) place(req api.RunRequest) (string, error) {
	st := rt.store.State()
	img, ok := st.Images[req.Image]
	if !ok {
		return "", fmt.Errorf("%w: no image %q in the cluster; import it with ferry image import %s PATH", node.ErrNotFound, req.Image, req.Image)
	}
	has := map[string]bool{}
	for _, n := range img.Nodes {
		has[n] = true
	}
	if req.Node != "" && !has[req.Node] {
		if _, known := st.Nodes[req.Node]; known {
			return "", fmt.Errorf("%w: node %s does not hold image %s (it is on %v); import it there first", node.ErrState, req.Node, req.Image, img.Nodes)
		}
	}
	var exclude []string
	for name := range st.Nodes {
		if !has[name] {
			exclude = append(exclude, name)
		}
	}
	n, err := cluster.Place(st, cluster.PlacementRequest{MemoryBytes: req.MemoryBytes, PinnedNode: req.Node, Exclude: exclude})
	if err != nil {
		return "", clusterError(err)
	}
	return n, nil
}

// clusterError maps the cluster package's errors to the node API's, for status codes and exit codes.
func clusterError(err error) error {
	switch {
	case errors.Is(err, cluster.ErrExists):
		return fmt.Errorf("%w: %v", node.ErrExists, err)
	case errors.Is(err, cluster.ErrUnknownNode), errors.Is(err, cluster.ErrUnknownContainer), errors.Is(err, cluster.ErrUnknownImage):
		return fmt.Errorf("%w: %v", node.ErrNotFound, err)
	case errors.Is(err, cluster.ErrInvalid):
		return fmt.Errorf("%w: %v", node.ErrInvalid, err)
	case errors.Is(err, cluster.ErrNoCapacity), errors.Is(err, cluster.ErrNodeDraining), errors.Is(err, cluster.ErrNodeMaintenance),
		errors.Is(err, cluster.ErrNodeUnavailable), errors.Is(err, cluster.ErrConflict), errors.Is(err, cluster.ErrBusy):
		return fmt.Errorf("%w: %v", node.ErrState, err)
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrShutdown):
		return fmt.Errorf("%w: %v", node.ErrUnavailable, err)
	}
	return err
}

func (rt *Router) images(w http.ResponseWriter, r *http.Request) {
	st := rt.store.State()
	local := map[string]*images.Image{}
	var raw json.RawMessage
	if err := rt.call(r.Context(), rt.self, "GET", "/v1/images", nil, &raw); err == nil {
		var list []*images.Image
		if json.Unmarshal(raw, &list) == nil {
			for _, img := range list {
				local[img.Name] = img
			}
		}
	}
	out := []api.ImageView{}
	for _, im := range st.ImageList() {
		v := api.ImageView{Image: images.Image{Name: im.Name, ID: im.ID, Layers: im.Layers}, Nodes: im.Nodes}
		if l, ok := local[im.Name]; ok && l.ID == im.ID {
			v.Image = *l
		}
		out = append(out, v)
	}
	api.WriteJSON(w, 200, out)
}

// importImage imports on this node (the path is on this host), then records in raft that this node holds it.
// The import's result reaches the client only once the record is applied, so that what the client does next
// (ferry run) finds the image.
func (rt *Router) importImage(w http.ResponseWriter, r *http.Request) {
	rec := &captureWriter{statusWriter: statusWriter{ResponseWriter: w, status: 200}}
	defer rec.release()
	rt.local.ServeHTTP(rec, r)
	if rec.status >= 300 || rec.failed {
		return
	}
	var img images.Image
	if err := resultOf(rec.tail, &img); err != nil || img.Name == "" {
		rt.log.Warn("could not read the imported image from the answer", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	nodes := []string{rt.self}
	if old, ok := rt.store.State().Images[img.Name]; ok && old.ID == img.ID {
		nodes = append(nodes, old.Nodes...)
	}
	if _, err := rt.store.Apply(ctx, &cluster.PutImage{Image: cluster.Image{Name: img.Name, ID: img.ID, Layers: img.Layers, Nodes: uniq(nodes)}}); err != nil {
		rt.log.Warn("recording an imported image in the cluster state failed", "image", img.Name, "err", err)
	}
}

// captureWriter is a statusWriter whose tail keeps the last event (the result) of a stream, and which holds
// the result event back from the client until release.
type captureWriter struct {
	statusWriter
	held []byte
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if bytes.HasPrefix(b, []byte(`{"type":"result"`)) {
		c.tail = append(c.tail, b...)
		c.held = append(c.held, b...)
		return len(b), nil
	}
	return c.statusWriter.Write(b)
}

// release sends the held result event, if any.
func (c *captureWriter) release() {
	if len(c.held) > 0 {
		_, _ = c.ResponseWriter.Write(c.held)
		c.held = nil
		c.Flush()
	}
}

func resultOf(tail []byte, out any) error {
	var ev api.Event
	if err := json.Unmarshal(lastLine(tail), &ev); err != nil {
		return err
	}
	if ev.Type != api.EventResult {
		return fmt.Errorf("last event is %q", ev.Type)
	}
	return json.Unmarshal(ev.Data, out)
}

func uniq(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
