package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustApply(t testing.TB, s *Store, op Op) Result {
	t.Helper()
	res, err := s.Apply(testCtx(t, 10*time.Second), op)
	if err != nil {
		t.Fatalf("%s on %s: %v", op.CommandType(), s.Name(), err)
	}
	return res
}

func nodeOp(name string, free int64) *RegisterNode {
	return &RegisterNode{Node: Node{
		Name: name, Addr: name + ":7000", RaftAddr: name + ":7001", GossipAddr: name + ":7002",
		CapacityMemory: 8 << 30, FreeMemory: free, Features: map[string]bool{"pre-dump": true},
	}}
}

func containerOp(name, node string, mem int64) *PlaceContainer {
	return &PlaceContainer{Container: Container{
		Name: name, Node: node, Image: "busybox",
		Config: ContainerConfig{Args: []string{"sleep", "inf"}, MemoryBytes: mem},
	}}
}

func TestClusterElectsLeaderAndReplicates(t *testing.T) {
	c := MakeTestCluster(t, 3)
	leader := c.Leader()
	for _, s := range c.Stores() {
		if name, _ := s.Leader(); name != leader.Name() {
			t.Fatalf("%s thinks the leader is %q, want %q", s.Name(), name, leader.Name())
		}
	}
	mustApply(t, leader, nodeOp("vg-1", 4<<30))
	res := mustApply(t, leader, containerOp("np", "vg-1", 64<<20))
	if res.Generation != 1 || res.Index == 0 {
		t.Fatalf("place result = %+v, want generation 1 and an index", res)
	}
	c.WaitApplied(res.Index)
	for _, s := range c.Stores() {
		ct := s.State().Containers["np"]
		if ct == nil || ct.Node != "vg-1" || ct.Desired != DesiredRunning {
			t.Fatalf("%s: container np = %+v", s.Name(), ct)
		}
	}
	servers, err := leader.Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("servers = %v, %v", servers, err)
	}
}

func TestFollowerWriteIsForwarded(t *testing.T) {
	c := MakeTestCluster(t, 3)
	f := c.Followers()[0]
	if f.IsLeader() {
		t.Fatal("follower is leader")
	}
	mustApply(t, f, nodeOp("vg-2", 1<<30))
	// Read your writes: Apply on a follower returns once the follower itself
	// applied the write, so its next read sees it (an operator who undrains a
	// node through one agent and lists the nodes there sees it eligible).
	for i := range 20 {
		name := fmt.Sprintf("web%d", i)
		res := mustApply(t, f, containerOp(name, "vg-2", 1<<20))
		if f.State().Containers[name] == nil || f.AppliedIndex() < res.Index {
			t.Fatalf("forwarded write %d (index %d) not visible on the follower when Apply returned (applied %d)", i, res.Index, f.AppliedIndex())
		}
	}
}

func TestForwardedErrorsKeepIdentity(t *testing.T) {
	c := MakeTestCluster(t, 3)
	f := c.Followers()[0]
	mustApply(t, f, nodeOp("vg-1", 1<<30))
	mustApply(t, f, containerOp("np", "vg-1", 0))
	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"unknown node", containerOp("x", "vg-9", 0), ErrUnknownNode},
		{"unknown container", &UpdateContainer{Name: "nope"}, ErrUnknownContainer},
		{"exists", containerOp("np", "vg-1", 0), ErrExists},
		{"conflict", &UpdateContainer{Name: "np", IfGeneration: 7}, ErrConflict},
		{"invalid", &AddOperator{Operator: Operator{ID: "SHA256:x", PublicKey: "k", Role: "root"}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []*Store{f, c.Leader()} {
				_, err := s.Apply(testCtx(t, 5*time.Second), tt.op)
				if !errors.Is(err, tt.want) {
					t.Fatalf("on %s: err = %v, want %v", s.Name(), err, tt.want)
				}
				var e *Error
				if !errors.As(err, &e) || e.Message == "" {
					t.Fatalf("err %v is not an *Error with a message", err)
				}
			}
		})
	}
}

func TestLeaderLossKeepsState(t *testing.T) {
	c := MakeTestCluster(t, 3)
	old := c.Leader()
	mustApply(t, old, nodeOp("vg-1", 1<<30))
	var last Result
	for i := range 20 {
		last = mustApply(t, old, containerOp(fmt.Sprintf("c%d", i), "vg-1", 0))
	}
	c.WaitApplied(last.Index)
	start := time.Now()
	c.Stop(old.Name())
	leader := c.Leader()
	t.Logf("new leader %s after %s", leader.Name(), time.Since(start))
	if leader.Name() == old.Name() {
		t.Fatal("stopped node is still leader")
	}
	if n := len(leader.State().Containers); n != 20 {
		t.Fatalf("new leader has %d containers, want 20", n)
	}
	// Writes continue, also from the other follower.
	other := c.Followers()[0]
	res := mustApply(t, other, containerOp("after", "vg-1", 0))
	c.WaitApplied(res.Index)
	if leader.State().Containers["after"] == nil {
		t.Fatal("write after failover missing")
	}
}

func TestOnLeadership(t *testing.T) {
	c := MakeTestCluster(t, 3)
	var running atomic.Int32
	started := make(chan string, 10)
	stopped := make(chan string, 10)
	for _, s := range c.Stores() {
		s.OnLeadership(func(ctx context.Context) {
			running.Add(1)
			started <- s.Name()
			<-ctx.Done()
			running.Add(-1)
			stopped <- s.Name()
		})
	}
	old := c.Leader()
	if got := waitName(t, started); got != old.Name() {
		t.Fatalf("leader loop started on %s, leader is %s", got, old.Name())
	}
	c.Stop(old.Name())
	if got := waitName(t, stopped); got != old.Name() {
		t.Fatalf("loop stopped on %s, want %s", got, old.Name())
	}
	leader := c.Leader()
	if got := waitName(t, started); got != leader.Name() {
		t.Fatalf("loop started on %s, new leader is %s", got, leader.Name())
	}
	if n := running.Load(); n != 1 {
		t.Fatalf("%d leader loops running, want 1", n)
	}
}

func waitName(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for leader loop")
		return ""
	}
}

func TestJoinBeyondMaxVotersAddsNonvoter(t *testing.T) {
	c := MakeTestCluster(t, 3)
	c.Leader().cfg.MaxVoters = 3 // test-only: as if the fourth were the sixth
	s := c.AddNode("vg-4")
	servers, err := c.Leader().Servers()
	if err != nil {
		t.Fatal(err)
	}
	for _, sv := range servers {
		if sv.Name == "vg-4" && sv.Voter {
			t.Fatal("vg-4 joined as voter beyond MaxVoters")
		}
	}
	res := mustApply(t, s, nodeOp("vg-4", 1))
	c.WaitApplied(res.Index)
	// Joining again is a no-op.
	if voter, err := c.Leader().Join(testCtx(t, 5*time.Second), "vg-4", s.RaftAddr()); err != nil || voter {
		t.Fatalf("rejoin = %v, %v", voter, err)
	}
	if _, err := s.Join(testCtx(t, time.Second), "x", "y"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("join on follower: %v, want ErrNotLeader", err)
	}
}
