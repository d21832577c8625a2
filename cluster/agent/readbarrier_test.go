package agent

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node/api"
)

// routedPeers carries a request for "http://NAME" to the named agent's router, as agent-to-agent calls do.
type routedPeers struct {
	routers map[string]*Router
	asked   atomic.Int64
}

func (p *routedPeers) Transport() http.RoundTripper { return p }

func (p *routedPeers) RoundTrip(r *http.Request) (*http.Response, error) {
	p.asked.Add(1)
	rt := p.routers[r.URL.Host]
	if rt == nil {
		return nil, fmt.Errorf("no agent at %s", r.URL.Host)
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, r.WithContext(WithCaller(r.Context(), Caller{Role: "agent", Name: "peer"})))
	return rec.Result(), nil
}

func TestOperatorReadOnFollowerSeesLeaderWrites(t *testing.T) {
	c := cluster.MakeTestCluster(t, 3)
	leader := c.Leader()
	peers := &routedPeers{routers: map[string]*Router{}}
	for _, s := range c.Stores() {
		peers.routers[s.Name()] = NewRouter(s.Name(), s, http.NotFoundHandler(), peers, nil, cluster.TestLogger(t))
		if _, err := leader.Apply(t.Context(), &cluster.RegisterNode{Node: cluster.Node{Name: s.Name(), Addr: s.Name()}}); err != nil {
			t.Fatal(err)
		}
	}
	f := c.Followers()[0]
	if err := f.WaitIndex(t.Context(), leader.AppliedIndex()); err != nil { // the follower knows where the leader is
		t.Fatal(err)
	}
	for i := range 20 {
		name := fmt.Sprintf("late%d", i)
		if _, err := leader.Apply(t.Context(), &cluster.RegisterNode{Node: cluster.Node{Name: name, Addr: name}}); err != nil {
			t.Fatal(err)
		}
		before := peers.asked.Load()
		var nodes []api.NodeView
		h := &routerHarness{t: t, rt: peers.routers[f.Name()], store: f}
		if _, err := h.do(viewer, "GET", "/v1/nodes", nil, &nodes); err != nil {
			t.Fatal(err)
		}
		if peers.asked.Load() == before {
			t.Fatal("the follower served an operator's read without asking the leader for its index")
		}
		found := false
		for _, n := range nodes {
			found = found || n.Name == name
		}
		if !found {
			t.Fatalf("node ls on the follower right after the leader registered %s does not list it", name)
		}
	}
	// An agent's own calls are not held back, and a read still works when the leader does not answer.
	before := peers.asked.Load()
	h := &routerHarness{t: t, rt: peers.routers[f.Name()], store: f}
	if _, err := h.do(peerAgent, "GET", "/v1/nodes", nil, nil); err != nil || peers.asked.Load() != before {
		t.Fatalf("agent read: %v, asked the leader %d times", err, peers.asked.Load()-before)
	}
	delete(peers.routers, leader.Name())
	start := time.Now()
	if _, err := h.do(viewer, "GET", "/v1/nodes", nil, nil); err != nil || time.Since(start) > readBarrierWait+time.Second {
		t.Fatalf("read with the leader unreachable: %v after %s", err, time.Since(start))
	}
}
