package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestLogger returns a logger writing to t.Log, at debug level when
// FERRY_TEST_DEBUG is set and info otherwise. Lines logged after the test
// ended (by goroutines still stopping) are dropped instead of panicking.
func TestLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs after later cleanups
	level := slog.LevelInfo
	if os.Getenv("FERRY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// TestCluster is a cluster of Stores in one process on raft's in-memory
// transport and in-memory stores, for tests (like raft's MakeCluster).
type TestCluster struct {
	t         testing.TB
	log       *slog.Logger
	Forwarder *LocalForwarder

	mu     sync.Mutex
	stores map[string]*Store
	trans  map[string]*raft.InmemTransport
	order  []string
}

// TestConfig returns the Config MakeTestCluster uses for a node: in-memory
// transport and stores, and timeouts short enough for tests.
func TestConfig(t testing.TB, name string, tr raft.Transport, fw Forwarder) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.Transport = tr
	cfg.LogStore = raft.NewInmemStore()
	cfg.StableStore = raft.NewInmemStore()
	cfg.SnapshotStore = raft.NewInmemSnapshotStore()
	cfg.Forwarder = fw
	cfg.HeartbeatTimeout = 100 * time.Millisecond
	cfg.ElectionTimeout = 100 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.ApplyTimeout = 5 * time.Second
	cfg.Logger = TestLogger(t)
	return cfg
}

// MakeTestCluster starts n Stores named vg-1..vg-n, all bootstrapped with
// the same configuration, connected on in-memory transports, and returns
// once they agree on a leader. The cluster is shut down in t.Cleanup.
func MakeTestCluster(t testing.TB, n int) *TestCluster {
	t.Helper()
	c := &TestCluster{
		t: t, log: TestLogger(t), Forwarder: NewLocalForwarder(),
		stores: map[string]*Store{}, trans: map[string]*raft.InmemTransport{},
	}
	t.Cleanup(c.Close)
	var peers []Peer
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("vg-%d", i)
		addr, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + name))
		c.trans[name] = tr
		c.order = append(c.order, name)
		peers = append(peers, Peer{Name: name, RaftAddr: string(addr)})
	}
	c.connectAll()
	for _, name := range c.order {
		cfg := TestConfig(t, name, c.trans[name], c.Forwarder)
		cfg.Bootstrap, cfg.Peers = true, peers
		c.open(cfg)
	}
	c.Leader()
	return c
}

func (c *TestCluster) connectAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, ta := range c.trans {
		for b, tb := range c.trans {
			if a != b {
				ta.Connect(tb.LocalAddr(), tb)
			}
		}
	}
}

func (c *TestCluster) open(cfg Config) *Store {
	c.t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("open %s: %v", cfg.Name, err)
	}
	c.mu.Lock()
	c.stores[cfg.Name] = s
	c.mu.Unlock()
	c.Forwarder.Register(s)
	return s
}

// Stores returns the running stores in name order.
func (c *TestCluster) Stores() []*Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Store
	for _, name := range c.order {
		if s := c.stores[name]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Store returns the named running store, or nil.
func (c *TestCluster) Store(name string) *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stores[name]
}

// Leader waits up to 10 s until every running store names the same leader,
// and returns it.
func (c *TestCluster) Leader() *Store {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l != nil {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader agreed by %d stores within 10s", len(c.Stores()))
	return nil
}

func (c *TestCluster) agreedLeader() *Store {
	var name string
	for _, s := range c.Stores() {
		n, _ := s.Leader()
		if n == "" || (name != "" && n != name) {
			return nil
		}
		name = n
	}
	if l := c.Store(name); l != nil && l.IsLeader() {
		return l
	}
	return nil
}

// Followers returns the running stores that are not the leader.
func (c *TestCluster) Followers() []*Store {
	l := c.Leader()
	var out []*Store
	for _, s := range c.Stores() {
		if s != l {
			out = append(out, s)
		}
	}
	return out
}

// Stop shuts the named store down and cuts it off the network.
func (c *TestCluster) Stop(name string) {
	c.mu.Lock()
	s := c.stores[name]
	delete(c.stores, name)
	tr := c.trans[name]
	others := make([]*raft.InmemTransport, 0, len(c.trans))
	for _, o := range c.trans {
		others = append(others, o)
	}
	c.mu.Unlock()
	if s == nil {
		return
	}
	c.Forwarder.Unregister(name)
	for _, other := range others {
		other.Disconnect(tr.LocalAddr())
	}
	tr.DisconnectAll()
	if err := s.Shutdown(); err != nil {
		c.t.Logf("shutdown %s: %v", name, err)
	}
}

// StartNode starts a new store without bootstrap and connects it to the
// others; it joins nothing (see AddNode, or ReconcileMembership).
func (c *TestCluster) StartNode(name string) *Store {
	c.t.Helper()
	_, tr := raft.NewInmemTransport(raft.ServerAddress("inmem-" + name))
	c.mu.Lock()
	c.trans[name] = tr
	c.order = append(c.order, name)
	c.mu.Unlock()
	c.connectAll()
	return c.open(TestConfig(c.t, name, tr, c.Forwarder))
}

// AddNode starts a new store and joins it through the leader; it returns
// once the new store has the leader's applied index.
func (c *TestCluster) AddNode(name string) *Store {
	c.t.Helper()
	leader := c.Leader()
	s := c.StartNode(name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := leader.Join(ctx, name, s.RaftAddr()); err != nil {
		c.t.Fatalf("join %s: %v", name, err)
	}
	if err := s.WaitIndex(ctx, leader.AppliedIndex()); err != nil {
		c.t.Fatalf("%s catching up: %v", name, err)
	}
	return s
}

// WaitApplied waits until every running store applied index.
func (c *TestCluster) WaitApplied(index uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range c.Stores() {
		if err := s.WaitIndex(ctx, index); err != nil {
			c.t.Fatalf("%s did not apply index %d (at %d): %v", s.Name(), index, s.AppliedIndex(), err)
		}
	}
}

// Close shuts every store down.
func (c *TestCluster) Close() {
	for _, s := range c.Stores() {
		c.Stop(s.Name())
	}
}
