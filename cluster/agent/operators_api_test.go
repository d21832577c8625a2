package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node/api"
	"golang.org/x/crypto/ssh"
)

// fakePeers is the router's Peers with the optional abilities of an Agent: it records disconnects.
type fakePeers struct {
	mu     sync.Mutex
	closed []string
	ca     ssh.PublicKey
}

func (p *fakePeers) Transport() http.RoundTripper { return http.DefaultTransport }
func (p *fakePeers) ClusterCA() ssh.PublicKey     { return p.ca }
func (p *fakePeers) DisconnectOperator(fp string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = append(p.closed, fp)
	return 1
}

func (p *fakePeers) disconnected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.closed...)
}

func newTestKey(t *testing.T, comment string) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}

type routerHarness struct {
	t     *testing.T
	rt    *Router
	store *cluster.Store
	peers *fakePeers
}

func newRouterHarness(t *testing.T) *routerHarness {
	store := cluster.MakeTestCluster(t, 1).Leader()
	ca, _ := newTestKey(t, "")
	peers := &fakePeers{ca: ca}
	rt := NewRouter(store.Name(), store, http.NotFoundHandler(), peers, nil, cluster.TestLogger(t))
	return &routerHarness{t: t, rt: rt, store: store, peers: peers}
}

// do serves one request as caller and decodes a JSON answer into out; it returns the status and the error body.
func (h *routerHarness) do(caller Caller, method, path string, body, out any) (int, error) {
	h.t.Helper()
	var b bytes.Buffer
	if body != nil {
		json.NewEncoder(&b).Encode(body)
	}
	req := httptest.NewRequest(method, path, &b).WithContext(WithCaller(h.t.Context(), caller))
	rec := httptest.NewRecorder()
	h.rt.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		var eb api.ErrorBody
		json.Unmarshal(rec.Body.Bytes(), &eb)
		return rec.Code, api.DecodeError(eb)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, rec.Body.String())
		}
	}
	return rec.Code, nil
}

var (
	root       = Caller{Role: "root", Name: "root"}
	controller = Caller{Role: "controller", Name: "ann"}
	viewer     = Caller{Role: "viewer", Name: "bob"}
	peerAgent  = Caller{Role: "agent", Name: "vg-2"}
)

func TestOperatorsAPI(t *testing.T) {
	h := newRouterHarness(t)
	annKey, annLine := newTestKey(t, "ann@laptop")
	bobKey, bobLine := newTestKey(t, "bob")
	for !strings.Contains(ssh.FingerprintSHA256(bobKey), "/") { // a '/' in the ID must survive the path
		bobKey, bobLine = newTestKey(t, "bob")
	}

	var ann, bob api.OperatorView
	if code, err := h.do(root, "POST", "/v1/operators", api.AddOperatorRequest{PublicKey: annLine, Role: "controller", Name: "ann"}, &ann); err != nil {
		t.Fatalf("root adds the first controller: %d %v", code, err)
	}
	if ann.ID != ssh.FingerprintSHA256(annKey) || ann.Name != "ann" || ann.Role != "controller" {
		t.Fatalf("added %+v", ann)
	}
	if _, err := h.do(controller, "POST", "/v1/operators", api.AddOperatorRequest{PublicKey: bobLine, Role: "viewer"}, &bob); err != nil {
		t.Fatalf("a controller adds a viewer: %v", err)
	}
	if bob.Name != "bob" {
		t.Fatalf("the key's comment should name the operator: %+v", bob)
	}
	var list []api.OperatorView
	if _, err := h.do(viewer, "GET", "/v1/operators", nil, &list); err != nil || len(list) != 2 {
		t.Fatalf("a viewer lists: %v %+v", err, list)
	}
	if role, name, ok := (operatorsOf(h.store)).OperatorRole(bob.ID); !ok || role != "viewer" || name != "bob" {
		t.Fatalf("the SSH authorizer does not see the new viewer: %q %q %v", role, name, ok)
	}

	var res api.RemoveOperatorResponse
	if _, err := h.do(controller, "DELETE", "/v1/operators/"+url.PathEscape(bob.ID), nil, &res); err != nil {
		t.Fatalf("remove by ID: %v", err)
	}
	if res.Operator.ID != bob.ID || res.Disconnected != 1 {
		t.Fatalf("remove answered %+v", res)
	}
	if got := h.peers.disconnected(); len(got) != 1 || got[0] != bob.ID {
		t.Fatalf("disconnected %v, want [%s]", got, bob.ID)
	}
	if _, _, ok := operatorsOf(h.store).OperatorRole(bob.ID); ok {
		t.Fatal("a removed key is still an operator")
	}
	// By name, and by ID without its prefix.
	h.do(controller, "POST", "/v1/operators", api.AddOperatorRequest{PublicKey: bobLine, Role: "viewer"}, nil)
	if _, err := h.do(root, "DELETE", "/v1/operators/bob", nil, nil); err != nil {
		t.Fatalf("remove by name: %v", err)
	}
	h.do(controller, "POST", "/v1/operators", api.AddOperatorRequest{PublicKey: bobLine, Role: "viewer"}, nil)
	// Escaped as the client does: a fingerprint may begin with '/' (one key in 64).
	if _, err := h.do(root, "DELETE", "/v1/operators/"+url.PathEscape(strings.TrimPrefix(bob.ID, "SHA256:")), nil, nil); err != nil {
		t.Fatalf("remove by bare ID: %v", err)
	}
}

func operatorsOf(s *cluster.Store) operators { return operators{a: &Agent{store: s}} }

func TestOperatorsAPIRefusals(t *testing.T) {
	h := newRouterHarness(t)
	_, annLine := newTestKey(t, "ann")
	_, otherLine := newTestKey(t, "other")
	_, twoLines := newTestKey(t, "x")
	_, second := newTestKey(t, "y")
	twoLines += "\n" + second
	if _, err := h.do(root, "POST", "/v1/operators", api.AddOperatorRequest{PublicKey: annLine, Role: "controller"}, nil); err != nil {
		t.Fatal(err)
	}
	add := func(key, role, name string) api.AddOperatorRequest {
		return api.AddOperatorRequest{PublicKey: key, Role: role, Name: name}
	}
	tests := []struct {
		name   string
		caller Caller
		method string
		path   string
		body   any
		status int
		want   string
	}{
		{"viewer adds", viewer, "POST", "/v1/operators", add(otherLine, "viewer", ""), 403, "viewer and may only read"},
		{"viewer removes", viewer, "DELETE", "/v1/operators/ann", nil, 403, "viewer and may only read"},
		{"agent adds", peerAgent, "POST", "/v1/operators", add(otherLine, "viewer", ""), 403, "only a controller, or root"},
		{"agent removes", peerAgent, "DELETE", "/v1/operators/ann", nil, 403, "only a controller, or root"},
		{"nobody lists", Caller{}, "GET", "/v1/operators", nil, 403, "not authenticated"},
		{"bad role", controller, "POST", "/v1/operators", add(otherLine, "admin", ""), 400, `role "admin": use controller or viewer`},
		{"private key", controller, "POST", "/v1/operators", add("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", "viewer", ""), 400, "use the .pub file"},
		{"two keys", controller, "POST", "/v1/operators", add(twoLines, "viewer", ""), 400, "holds 2 keys"},
		{"same key again", controller, "POST", "/v1/operators", add(annLine, "viewer", "ann2"), 409, "already registered"},
		{"name taken", controller, "POST", "/v1/operators", add(otherLine, "viewer", "ann"), 409, "an operator named ann already exists"},
		{"name with space", controller, "POST", "/v1/operators", add(otherLine, "viewer", "a b"), 400, "operator name"},
		{"remove unknown", controller, "DELETE", "/v1/operators/zed", nil, 404, `no operator with ID or name "zed"`},
		{"internal disconnect from an operator", controller, "POST", "/v1/internal/disconnect", DisconnectRequest{ID: "x"}, 403, "only agents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, err := h.do(tt.caller, tt.method, tt.path, tt.body, nil)
			if code != tt.status || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%d %v, want %d saying %q", code, err, tt.status, tt.want)
			}
			if tt.status == 403 && !errors.Is(err, api.ErrForbidden) {
				t.Fatalf("%v is not ErrForbidden", err)
			}
		})
	}
	var list []api.OperatorView
	h.do(root, "GET", "/v1/operators", nil, &list)
	if len(list) != 1 {
		t.Fatalf("refused requests changed the operators: %+v", list)
	}
	if len(h.peers.disconnected()) != 0 {
		t.Fatal("refused requests closed connections")
	}
}

func TestInternalDisconnectAndCA(t *testing.T) {
	h := newRouterHarness(t)
	var res api.RemoveOperatorResponse
	if _, err := h.do(peerAgent, "POST", "/v1/internal/disconnect", DisconnectRequest{ID: "SHA256:abc"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Disconnected != 1 || len(h.peers.disconnected()) != 1 {
		t.Fatalf("an agent's disconnect request: %+v %v", res, h.peers.disconnected())
	}
	var ca api.CAResponse
	if _, err := h.do(viewer, "GET", "/v1/cluster/ca", nil, &ca); err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ca.PublicKey))
	if err != nil || ssh.FingerprintSHA256(k) != ssh.FingerprintSHA256(h.peers.ca) || ca.Fingerprint != ssh.FingerprintSHA256(k) {
		t.Fatalf("cluster CA %+v (%v)", ca, err)
	}
}
