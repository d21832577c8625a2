package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// diskConfig is a node on TCP 127.0.0.1 with bbolt stores in dir.
func diskConfig(t testing.TB, name, dir, bind string, fw Forwarder) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.DataDir = dir
	cfg.RaftBind = bind
	cfg.Forwarder = fw
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 200 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = TestLogger(t)
	return cfg
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func TestTCPClusterOnDiskRestart(t *testing.T) {
	fw := NewLocalForwarder()
	root := t.TempDir()
	dirs := map[string]string{}
	stores := map[string]*Store{}
	var mu sync.Mutex
	start := func(name string, bootstrap bool, bind string) *Store {
		dirs[name] = filepath.Join(root, name)
		cfg := diskConfig(t, name, dirs[name], bind, fw)
		cfg.Bootstrap = bootstrap
		s := openStore(t, cfg)
		fw.Register(s)
		mu.Lock()
		stores[name] = s
		mu.Unlock()
		return s
	}
	ctx := testCtx(t, 30*time.Second)
	n1 := start("vg-1", true, "127.0.0.1:0")
	if _, err := n1.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vg-2", "vg-3"} {
		s := start(name, false, "127.0.0.1:0")
		if _, err := n1.Join(ctx, name, s.RaftAddr()); err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
	}
	mustApply(t, n1, nodeOp("vg-1", 1<<30))
	res := mustApply(t, stores["vg-2"], containerOp("np", "vg-1", 0)) // forwarded
	for _, s := range stores {
		if err := s.WaitIndex(ctx, res.Index); err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
	}

	// Restart vg-3 from its data dir on the same address, without bootstrap,
	// and have it catch up with writes made while it was down.
	addr3 := stores["vg-3"].RaftAddr()
	if err := stores["vg-3"].Shutdown(); err != nil {
		t.Fatal(err)
	}
	fw.Unregister("vg-3")
	for i := range 5 {
		res = mustApply(t, n1, containerOp(fmt.Sprintf("while-down-%d", i), "vg-1", 0))
	}
	n3 := start("vg-3", false, addr3)
	if err := n3.WaitIndex(ctx, res.Index); err != nil {
		t.Fatalf("restarted vg-3 did not catch up: %v", err)
	}
	st := n3.State()
	if len(st.Containers) != 6 || st.Nodes["vg-1"] == nil {
		t.Fatalf("restarted vg-3 has %d containers, want 6", len(st.Containers))
	}
	// And it takes writes (forwarded).
	res = mustApply(t, n3, containerOp("after-restart", "vg-1", 0))
	if err := n3.WaitIndex(ctx, res.Index); err != nil {
		t.Fatal(err)
	}
	servers, err := n1.Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("servers = %v, %v", servers, err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Name, ok.DataDir = "vg-1", "/tmp/x"
	tests := []struct {
		name string
		mod  func(*Config)
		msg  string
	}{
		{"ok", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "Name is empty"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir is empty"},
		{"both bootstraps", func(c *Config) { c.Bootstrap, c.BootstrapExpect = true, 3 }, "exclude each other"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = 10 * time.Millisecond }, "ElectionTimeout (10ms) is below HeartbeatTimeout (1s)"},
		{"peers without self", func(c *Config) { c.Bootstrap, c.Peers = true, []Peer{{Name: "vg-2", RaftAddr: "x:1"}} }, "does not include this node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %q", err, tt.msg)
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkApply measures commands per second through real raft with bbolt
// on disk on a single node, against a state of 1,000 containers. Clients
// apply concurrently (as agents do), so raft batches them into one fsync.
func BenchmarkApply(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			cfg := diskConfig(b, "vg-1", b.TempDir(), "127.0.0.1:0", nil)
			cfg.Bootstrap = true
			cfg.Logger = discard()
			s := openStore(b, cfg)
			ctx := context.Background()
			if _, err := s.WaitLeader(ctx); err != nil {
				b.Fatal(err)
			}
			for !s.IsLeader() {
				time.Sleep(5 * time.Millisecond)
			}
			mustApply(b, s, nodeOp("vg-1", 1<<40))
			for i := range 1000 {
				mustApply(b, s, containerOp(fmt.Sprintf("c%04d", i), "vg-1", 1<<20))
			}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			next := make(chan int)
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						d := DesiredStopped
						if i%2 == 0 {
							d = DesiredRunning
						}
						if _, err := s.Apply(ctx, &UpdateContainer{Name: fmt.Sprintf("c%04d", i%1000), Desired: &d}); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				next <- i
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cmds/s")
		})
	}
}
