package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

// Caller is who made a request: an operator (by role), another agent, or root on the local socket.
type Caller struct {
	Role string // "controller", "viewer", "agent" or "root"
	Name string // operator name, agent node name, or "root"
}

// mayChange reports whether the caller may change things (not a viewer).
func (c Caller) mayChange() bool { return c.Role != string(cluster.RoleViewer) }

// trusted reports whether the caller may ask for node-local execution (another agent or local root).
func (c Caller) trusted() bool { return c.Role == "agent" || c.Role == "root" }

type callerKey struct{}

// WithCaller returns ctx carrying the caller, for the router to check.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(r *http.Request) Caller {
	c, _ := r.Context().Value(callerKey{}).(Caller)
	return c
}

// Peers reaches other agents' APIs: Transport carries requests to "http://ADDR/..." (over SSH).
type Peers interface {
	Transport() http.RoundTripper
}

// Router is an agent's API as the cluster sees it: requests about a container go to the node that holds it,
// a new container goes where the leader places it, lists cover every node, and requests marked node-local
// (from other agents) run on this node through the node's own API. Changes are refused to viewers.
type Router struct {
	self  string
	store *cluster.Store
	local http.Handler
	peers Peers
	log   *slog.Logger
	token func() (string, error)
	mux   *http.ServeMux
}

// NewRouter returns the cluster API of the agent named self.
func NewRouter(self string, store *cluster.Store, local http.Handler, peers Peers, token func() (string, error), log *slog.Logger) *Router {
	r := &Router{self: self, store: store, local: local, peers: peers, token: token, log: log, mux: http.NewServeMux()}
	r.mux.HandleFunc("GET /v1/nodes", r.nodes)
	r.mux.HandleFunc("GET /v1/node", r.nodeInfo)
	r.mux.HandleFunc("GET /v1/containers", r.containers)
	r.mux.HandleFunc("POST /v1/containers", r.run)
	r.mux.HandleFunc("/v1/containers/{name}", r.container)
	r.mux.HandleFunc("/v1/containers/{name}/{op}", r.container)
	r.mux.HandleFunc("GET /v1/images", r.images)
	r.mux.HandleFunc("POST /v1/images", r.importImage)
	r.mux.HandleFunc("POST /v1/internal/forward", r.forward)
	r.mux.HandleFunc("GET /v1/internal/index", r.servedIndex)
	r.mux.HandleFunc("GET /v1/cluster/token", r.joinToken)
	r.mux.HandleFunc("GET /v1/cluster/ca", r.clusterCA)
	r.mux.HandleFunc("GET /v1/operators", r.listOperators)
	r.mux.HandleFunc("POST /v1/operators", r.addOperator)
	r.mux.HandleFunc("DELETE /v1/operators/{id...}", r.removeOperator)
	r.mux.HandleFunc("POST /v1/internal/disconnect", r.disconnect)
	return r
}

// handle adds a route (the agent adds its agent-to-agent and job routes).
func (rt *Router) handle(pattern string, h http.HandlerFunc) { rt.mux.HandleFunc(pattern, h) }

// ServeHTTP checks the caller's role, lets an operator's request on a follower catch up with the leader
// (catchUp), then routes.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	if c.Role == "" {
		api.WriteError(w, fmt.Errorf("%w: the caller is not authenticated", api.ErrForbidden))
		return
	}
	if r.Method != http.MethodGet && !c.mayChange() {
		api.WriteError(w, fmt.Errorf("%w: operator %s is a viewer and may only read; a controller can grant more with ferry operator add --role controller", api.ErrForbidden, c.Name))
		return
	}
	if r.Header.Get(api.HeaderLocal) != "" {
		if !c.trusted() {
			api.WriteError(w, fmt.Errorf("%w: node-local requests come only from agents", api.ErrForbidden))
			return
		}
		rt.local.ServeHTTP(w, r)
		return
	}
	if c.Role != "agent" {
		rt.catchUp(r.Context()) // an operator sees at least what the leader had when they asked
	}
	rt.mux.ServeHTTP(w, r)
}

// nodeAddr returns the API address of a node, or an error naming the node.
func (rt *Router) nodeAddr(name string) (string, error) {
	var addr string
	var status cluster.NodeStatus
	rt.store.View(func(s *cluster.State) {
		if n, ok := s.Nodes[name]; ok {
			addr, status = n.Addr, n.Status
		}
	})
	if addr == "" {
		return "", fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, name)
	}
	if name != rt.self && (status == cluster.StatusDead || status == cluster.StatusLeft) {
		return addr, fmt.Errorf("%w: node %s is %s", api.ErrNodeUnreachable, name, status)
	}
	return addr, nil
}

// toNode serves r on the named node: locally, or proxied to that agent as a node-local request.
func (rt *Router) toNode(w http.ResponseWriter, r *http.Request, nodeName string) {
	if nodeName == rt.self {
		rt.local.ServeHTTP(w, r)
		return
	}
	addr, err := rt.nodeAddr(nodeName)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	rt.proxy(addr, nodeName, true).ServeHTTP(w, r)
}

// proxy returns a reverse proxy to the agent at addr; local marks the request node-local.
func (rt *Router) proxy(addr, nodeName string, local bool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "http", addr, addr
			if local {
				pr.Out.Header.Set(api.HeaderLocal, "1")
			}
		},
		Transport:     rt.peers.Transport(),
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			api.WriteError(w, fmt.Errorf("%w: node %s (%s) did not answer: %v; it may be down (ferry node ls)", api.ErrNodeUnreachable, nodeName, addr, err))
		},
	}
}

// call makes a node-local request to a node and decodes its JSON answer into out.
func (rt *Router) call(ctx context.Context, nodeName, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set(api.HeaderLocal, "1")
	rec := &responseRecorder{header: http.Header{}, status: 200}
	ctx = WithCaller(ctx, Caller{Role: "agent", Name: rt.self})
	rt.toNode(rec, req.WithContext(ctx), nodeName)
	return decodeRecorded(rec, out)
}

// container routes a request about one container to the node that holds it, then records in the cluster's
// state what the request changed.
func (rt *Router) container(w http.ResponseWriter, r *http.Request) {
	name, op := r.PathValue("name"), r.PathValue("op")
	c, ok := rt.lookupContainer(name)
	if !ok {
		api.WriteError(w, fmt.Errorf("%w: no container named %q in the cluster (ferry ps lists them)", node.ErrNotFound, name))
		return
	}
	if op == "logs" && r.URL.Query().Get("follow") == "1" {
		rt.followLogs(w, r, name)
		return
	}
	rec := &statusWriter{ResponseWriter: w, status: 200}
	rt.toNode(rec, r, c.Node)
	if rec.status >= 300 || rec.failed {
		return
	}
	rt.recordChange(r.Context(), r.Method, op, c)
}

func (rt *Router) lookupContainer(name string) (cluster.Container, bool) {
	var c cluster.Container
	var ok bool
	rt.store.View(func(s *cluster.State) {
		if p, found := s.Containers[name]; found {
			c, ok = *p.Clone(), true
		}
	})
	return c, ok
}

// recordChange writes to raft what a successful container operation changed.
func (rt *Router) recordChange(ctx context.Context, method, op string, c cluster.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var cmd cluster.Op
	switch {
	case method == http.MethodDelete && op == "":
		cmd = &cluster.RemoveContainer{Name: c.Name}
	case op == "stop":
		d := cluster.DesiredStopped
		cmd = &cluster.UpdateContainer{Name: c.Name, Desired: &d}
	case op == "restore":
		d := cluster.DesiredRunning
		cmd = &cluster.UpdateContainer{Name: c.Name, Desired: &d}
	default:
		return
	}
	if _, err := rt.store.Apply(ctx, cmd); err != nil {
		rt.log.Warn("recording a container change in the cluster state failed", "container", c.Name, "op", op, "err", err)
	}
}

func (rt *Router) forward(w http.ResponseWriter, r *http.Request) {
	if callerOf(r).Role != "agent" {
		api.WriteError(w, fmt.Errorf("%w: only agents forward writes", api.ErrForbidden))
		return
	}
	var cmd cluster.Command
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&cmd); err != nil {
		api.WriteError(w, fmt.Errorf("%w: forwarded command: %v", node.ErrInvalid, err))
		return
	}
	api.WriteJSON(w, 200, rt.store.ServeForward(r.Context(), cmd))
}

func (rt *Router) joinToken(w http.ResponseWriter, r *http.Request) {
	if c := callerOf(r); c.Role != "root" && c.Role != string(cluster.RoleController) {
		api.WriteError(w, fmt.Errorf("%w: only a controller may make join tokens", api.ErrForbidden))
		return
	}
	tok, err := rt.token()
	if err != nil {
		api.WriteError(w, err)
		return
	}
	api.WriteJSON(w, 200, api.TokenResponse{Token: tok})
}

// leaderWait is how long a request that needs the leader waits for one (an election takes about a second).
const leaderWait = 10 * time.Second

// proxyToLeader sends r to the leader's agent, when this agent is not the leader. It reports whether it did.
func (rt *Router) proxyToLeader(w http.ResponseWriter, r *http.Request, body []byte) bool {
	if rt.store.IsLeader() {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaderWait)
	leader, err := rt.store.WaitLeader(ctx)
	cancel()
	if err != nil || leader == "" {
		api.WriteError(w, fmt.Errorf("%w: the cluster has had no leader for %s; a majority of the nodes must be up (ferry node ls shows them)", node.ErrUnavailable, leaderWait))
		return true
	}
	if leader == rt.self {
		return false
	}
	addr, err := rt.nodeAddr(leader)
	if err != nil {
		api.WriteError(w, err)
		return true
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rt.proxy(addr, leader, false).ServeHTTP(w, r)
	return true
}

// statusWriter notes the status of a response passing through, and whether a streamed answer ended in error.
type statusWriter struct {
	http.ResponseWriter
	status int
	failed bool
	tail   []byte
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.tail = append(s.tail, b...)
	if len(s.tail) > 64<<10 {
		s.tail = s.tail[len(s.tail)-64<<10:]
	}
	s.failed = bytes.Contains(lastLine(s.tail), []byte(`"type":"error"`))
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// responseRecorder buffers a response for decoding.
type responseRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *responseRecorder) Header() http.Header         { return r.header }
func (r *responseRecorder) WriteHeader(code int)        { r.status = code }
func (r *responseRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *responseRecorder) Flush()                      {}

func decodeRecorded(rec *responseRecorder, out any) error {
	if rec.status >= 300 {
		var eb api.ErrorBody
		if err := json.Unmarshal(rec.body.Bytes(), &eb); err != nil {
			return fmt.Errorf("the node answered %d: %s", rec.status, strings.TrimSpace(rec.body.String()))
		}
		return api.DecodeError(eb)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rec.body.Bytes(), out)
}

// maxRequestBody bounds an API request's JSON body.
const maxRequestBody = 1 << 20

// readRequest reads r's JSON body (at most maxRequestBody) into v, refusing unknown fields, and returns the
// body as read, for a request that is then passed on to the leader.
func readRequest(r *http.Request, v any) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("%w: request body: %v", node.ErrInvalid, err)
	}
	return body, nil
}
