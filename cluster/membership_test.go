package cluster

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func fastMemberlist() *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 2
	c.SuspicionMaxTimeoutMult = 2
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = 500 * time.Millisecond
	c.GossipToTheDeadTime = time.Second
	return c
}

func startMember(t *testing.T, name string, key []byte, meta *atomic.Pointer[NodeMeta]) *Membership {
	t.Helper()
	m, err := NewMembership(MemberConfig{
		Name: name, BindAddr: "127.0.0.1", SecretKey: key,
		Meta:   func() NodeMeta { return *meta.Load() },
		Logger: TestLogger(t), Memberlist: fastMemberlist(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func waitMember(t *testing.T, m *Membership, what string, cond func(map[string]Member) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		byName := map[string]Member{}
		for _, mem := range m.Members() {
			byName[mem.Name] = mem
		}
		if cond(byName) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; members: %+v", what, m.Members())
}

func TestMembership(t *testing.T) {
	key, err := GossipKey([]byte("the cluster secret, 32 bytes...."))
	if err != nil {
		t.Fatal(err)
	}
	metas := map[string]*atomic.Pointer[NodeMeta]{}
	ms := map[string]*Membership{}
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("vg-%d", i)
		p := &atomic.Pointer[NodeMeta]{}
		p.Store(&NodeMeta{Addr: name + ":7000", RaftAddr: name + ":7001", FreeMemory: int64(i) << 30, Features: []string{"pre-dump"}})
		metas[name] = p
		ms[name] = startMember(t, name, key, p)
	}
	seed := ms["vg-1"].GossipAddr()
	for _, name := range []string{"vg-2", "vg-3", "vg-4"} {
		if n, err := ms[name].Join([]string{seed}); err != nil || n != 1 {
			t.Fatalf("%s join: %d, %v", name, n, err)
		}
	}
	waitMember(t, ms["vg-1"], "3 alive members with metadata", func(by map[string]Member) bool {
		return len(by) == 4 && by["vg-3"].Status == StatusAlive && by["vg-3"].Meta.Addr == "vg-3:7000" && by["vg-2"].Meta.FreeMemory == 2<<30
	})

	// A member that leaves stops being alive. memberlist should report it
	// as left; in this setup it reports dead (see the report), so accept both.
	if err := ms["vg-4"].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitMember(t, ms["vg-1"], "vg-4 gone", func(by map[string]Member) bool {
		return by["vg-4"].Status == StatusLeft || by["vg-4"].Status == StatusDead
	})

	// Metadata updates propagate.
	metas["vg-2"].Store(&NodeMeta{Addr: "vg-2:7000", RaftAddr: "vg-2:7001", FreeMemory: 5})
	if err := ms["vg-2"].UpdateMeta(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitMember(t, ms["vg-3"], "vg-2's new metadata", func(by map[string]Member) bool {
		return by["vg-2"].Meta.FreeMemory == 5
	})

	// A member with another cluster's key cannot join.
	other, _ := GossipKey([]byte("another cluster's secret......."))
	p := &atomic.Pointer[NodeMeta]{}
	p.Store(&NodeMeta{})
	stranger := startMember(t, "intruder", other, p)
	if n, err := stranger.Join([]string{seed}); err == nil || n != 0 {
		t.Fatalf("join with the wrong key: %d, %v; want refused", n, err)
	}
	for _, mem := range ms["vg-1"].Members() {
		if mem.Name == "intruder" {
			t.Fatal("intruder is listed as a member")
		}
	}

	// A member that stops without leaving goes suspect, then dead.
	start := time.Now()
	_ = ms["vg-3"].Shutdown()
	sawSuspect := false
	waitMember(t, ms["vg-1"], "vg-3 dead", func(by map[string]Member) bool {
		sawSuspect = sawSuspect || by["vg-3"].Status == StatusSuspect
		return by["vg-3"].Status == StatusDead
	})
	t.Logf("vg-3 dead after %s (suspect seen: %v)", time.Since(start), sawSuspect)
	if !sawSuspect {
		t.Error("vg-3 never showed as suspect before dead")
	}

}

func TestNodeMetaFitsLimit(t *testing.T) {
	host := strings.Repeat("h", 63) + ".example.internal"
	m := NodeMeta{
		Addr: "[fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535", RaftAddr: host + ":65535",
		CapacityMemory: 1 << 50, FreeMemory: 1 << 50, Ineligible: true,
		Features: []string{"dirty-tracking", "lazy-pages", "memfd", "mem-track", "pidfd-store", "pre-dump", "page-server",
			"soft-dirty", "thp-disabled", "uffd", "uffd-noncoop", "network-lock-nftables"},
	}
	b, err := m.Encode(memberlist.MetaMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst-case metadata: %d of %d bytes", len(b), memberlist.MetaMaxSize)
	got, err := DecodeNodeMeta(b)
	if err != nil || got.FreeMemory != m.FreeMemory || len(got.Features) != len(m.Features) {
		t.Fatalf("decode: %+v, %v", got, err)
	}
	m.Features = append(m.Features, strings.Repeat("x", 300))
	if _, err := m.Encode(memberlist.MetaMaxSize); err == nil {
		t.Fatal("oversized metadata accepted")
	}
}

type fakeMembers []Member

func (f fakeMembers) Members() []Member { return f }

func TestReconcileMembership(t *testing.T) {
	c := MakeTestCluster(t, 3)
	leader := c.Leader()
	vg4 := c.StartNode("vg-4")
	ctx := testCtx(t, 10*time.Second)
	members := fakeMembers{
		{Name: "vg-1", Status: StatusAlive, Meta: NodeMeta{Addr: "a1", RaftAddr: "inmem-vg-1", FreeMemory: 10, Features: []string{"pre-dump"}}},
		{Name: "vg-2", Status: StatusSuspect, Meta: NodeMeta{Addr: "a2", RaftAddr: "inmem-vg-2"}},
		{Name: "vg-3", Status: StatusAlive, Meta: NodeMeta{Addr: "a3", RaftAddr: "inmem-vg-3"}},
		{Name: "vg-4", Status: StatusAlive, Meta: NodeMeta{Addr: "a4", RaftAddr: vg4.RaftAddr(), FreeMemory: 40}},
		{Name: "vg-9", Status: StatusDead}, // never registered: ignored
	}
	if err := ReconcileMembership(ctx, leader, members); err != nil {
		t.Fatal(err)
	}
	st := leader.State()
	if n := st.Nodes["vg-2"]; n == nil || n.Status != StatusSuspect {
		t.Fatalf("vg-2 = %+v, want suspect", n)
	}
	if n := st.Nodes["vg-1"]; n == nil || !n.Features["pre-dump"] || n.FreeMemory != 10 || !n.Eligible {
		t.Fatalf("vg-1 = %+v", n)
	}
	if st.Nodes["vg-9"] != nil {
		t.Fatal("dead unknown member registered")
	}
	servers, _ := leader.Servers()
	if len(servers) != 4 {
		t.Fatalf("raft servers = %+v, want vg-4 joined", servers)
	}
	// Second pass with changes: vg-2 dead, vg-1 freer; a pass without changes applies nothing.
	members[1].Status = StatusDead
	members[0].Meta.FreeMemory = 20
	if err := ReconcileMembership(ctx, leader, members); err != nil {
		t.Fatal(err)
	}
	idx := leader.AppliedIndex()
	if err := ReconcileMembership(ctx, leader, members); err != nil {
		t.Fatal(err)
	}
	if leader.AppliedIndex() != idx {
		t.Fatal("a reconcile pass without changes wrote to raft")
	}
	st = leader.State()
	if st.Nodes["vg-2"].Status != StatusDead || st.Nodes["vg-1"].FreeMemory != 20 {
		t.Fatalf("after second pass: vg-2 %s, vg-1 free %d", st.Nodes["vg-2"].Status, st.Nodes["vg-1"].FreeMemory)
	}
	// What operators set (maintenance, eligibility) survives the passes that follow, changes or not.
	on, no := true, false
	if _, err := leader.Apply(ctx, &UpdateNode{Name: "vg-3", Maintenance: &on, Eligible: &no}); err != nil {
		t.Fatal(err)
	}
	members[2].Meta.FreeMemory = 30
	for range 2 {
		if err := ReconcileMembership(ctx, leader, members); err != nil {
			t.Fatal(err)
		}
	}
	if n := leader.State().Nodes["vg-3"]; !n.Maintenance || n.Eligible || n.FreeMemory != 30 {
		t.Fatalf("vg-3 after reconciling: maintenance %v, eligible %v, free %d; want the operator's maintenance kept", n.Maintenance, n.Eligible, n.FreeMemory)
	}
}
