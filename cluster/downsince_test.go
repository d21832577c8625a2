package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestNodeDownSince(t *testing.T) {
	s := NewState()
	t0 := time.Unix(1700000000, 0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	if _, err := (&RegisterNode{Node: Node{Name: "vg-1"}}).apply(s, at(0)); err != nil {
		t.Fatal(err)
	}
	status := func(sec int, st NodeStatus) time.Time {
		t.Helper()
		if _, err := (&UpdateNode{Name: "vg-1", Status: &st}).apply(s, at(sec)); err != nil {
			t.Fatal(err)
		}
		return s.Nodes["vg-1"].DownSince
	}
	if d := s.Nodes["vg-1"].DownSince; !d.IsZero() {
		t.Fatalf("a new alive node is down since %s", d)
	}
	steps := []struct {
		sec  int
		to   NodeStatus
		want time.Time
	}{
		{1, StatusSuspect, at(1)},
		{3, StatusDead, at(1)}, // still the same time down
		{5, StatusAlive, time.Time{}},
		{7, StatusDead, at(7)},
	}
	for _, st := range steps {
		if got := status(st.sec, st.to); !got.Equal(st.want) {
			t.Fatalf("after %s at +%ds: down since %s, want %s", st.to, st.sec, got, st.want)
		}
	}
	free := int64(1)
	if _, err := (&UpdateNode{Name: "vg-1", FreeMemory: &free}).apply(s, at(9)); err != nil || !s.Nodes["vg-1"].DownSince.Equal(at(7)) {
		t.Fatalf("an update without a status moved DownSince: %v %s", err, s.Nodes["vg-1"].DownSince)
	}
	if _, err := (&RegisterNode{Node: Node{Name: "vg-1", Status: StatusAlive}}).apply(s, at(11)); err != nil || !s.Nodes["vg-1"].DownSince.IsZero() {
		t.Fatalf("registered alive again: %v, down since %s", err, s.Nodes["vg-1"].DownSince)
	}
}

func TestSilence(t *testing.T) {
	var s silence
	t0 := time.Unix(1700000000, 0)
	obs := func(d any) { s.observe(raft.Observation{Data: d}) }
	if _, ok := s.get("vg-1"); ok {
		t.Fatal("silent before any failure")
	}
	obs(raft.FailedHeartbeatObservation{PeerID: "vg-1", LastContact: t0})
	obs(raft.FailedHeartbeatObservation{PeerID: "vg-1", LastContact: t0.Add(time.Second)})
	if at, ok := s.get("vg-1"); !ok || !at.Equal(t0) {
		t.Fatalf("silent since %s %v, want the first failure's last contact %s", at, ok, t0)
	}
	obs(raft.ResumedHeartbeatObservation{PeerID: "vg-1"})
	if _, ok := s.get("vg-1"); ok {
		t.Fatal("still silent after heartbeats resumed")
	}
	obs(raft.FailedHeartbeatObservation{PeerID: "vg-2", LastContact: t0})
	obs(raft.LeaderObservation{})
	if _, ok := s.get("vg-2"); ok {
		t.Fatal("a new term kept the last term's silence")
	}
}

func TestFailoverKeepsEligibility(t *testing.T) {
	s := NewState()
	at := time.Unix(1700000000, 0)
	if _, err := (&RegisterNode{Node: Node{Name: "vg-1"}}).apply(s, at); err != nil {
		t.Fatal(err)
	}
	if _, err := (&CreateDrain{Job: DrainJob{ID: "f1", Node: "vg-1", Reason: ReasonFailover}}).apply(s, at); err != nil {
		t.Fatal(err)
	}
	if !s.Nodes["vg-1"].Eligible {
		t.Fatal("a failover made the node ineligible")
	}
	if f := s.LatestFailover("vg-1"); f == nil || f.ID != "f1" {
		t.Fatalf("LatestFailover = %+v", f)
	}
	if _, err := (&UpdateDrain{ID: "f1", State: JobCommitted}).apply(s, at); err != nil {
		t.Fatal(err)
	}
	if _, err := (&CreateDrain{Job: DrainJob{ID: "d1", Node: "vg-1", Reason: "drain"}}).apply(s, at); err != nil || s.Nodes["vg-1"].Eligible {
		t.Fatalf("a drain after it: %v, eligible %v", err, s.Nodes["vg-1"].Eligible)
	}
}
