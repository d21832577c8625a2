package sshx

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countFSM records applied commands.
type countFSM struct {
	mu   sync.Mutex
	logs []string
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, string(l.Data))
	return len(f.logs)
}

func (f *countFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.logs...)
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("not supported") }
func (f *countFSM) Restore(io.ReadCloser) error         { return fmt.Errorf("not supported") }

func TestRaftOverSSH(t *testing.T) {
	ca := newTestCA(t)
	const n = 3
	var (
		rafts   []*raft.Raft
		fsms    []*countFSM
		servers []raft.Server
		layers  []*StreamLayer
	)
	for i := range n {
		id := newTestIdentity(t, ca, fmt.Sprintf("n%d", i+1))
		srv, addr := startServer(t, id, "", nil)
		pool := NewPool(&Dialer{Identity: id, Logger: testLogger(t)})
		t.Cleanup(func() { pool.Close() })
		tcp, _ := net.ResolveTCPAddr("tcp", addr)
		layers = append(layers, NewStreamLayer(srv, pool, tcp))
		servers = append(servers, raft.Server{ID: raft.ServerID(id.Name), Address: raft.ServerAddress(addr)})
	}
	for i := range n {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout = 200 * time.Millisecond
		conf.ElectionTimeout = 200 * time.Millisecond
		conf.LeaderLeaseTimeout = 100 * time.Millisecond
		conf.CommitTimeout = 10 * time.Millisecond
		conf.LogOutput = testOutput(t)
		conf.LogLevel = "WARN"
		trans := raft.NewNetworkTransport(layers[i], 3, 2*time.Second, testOutput(t))
		store := raft.NewInmemStore()
		fsm := &countFSM{}
		r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Shutdown().Error() })
		rafts, fsms = append(rafts, r), append(fsms, fsm)
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}

	var leader *raft.Raft
	deadline := time.Now().Add(20 * time.Second)
	for leader == nil && time.Now().Before(deadline) {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no leader elected over SSH within 20s")
	}
	if err := leader.Apply([]byte("hello over ssh"), 5*time.Second).Error(); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for time.Now().Before(deadline) {
		done := 0
		for _, f := range fsms {
			if l := f.applied(); len(l) == 1 && l[0] == "hello over ssh" {
				done++
			}
		}
		if done == n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the entry did not reach all three FSMs")
}
