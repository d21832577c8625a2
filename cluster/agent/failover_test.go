package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
)

func TestFailoverDue(t *testing.T) {
	now := time.Unix(1700000000, 0)
	delay := 5 * time.Second
	downAt := now.Add(-10 * time.Second)
	base := func() (*cluster.State, *cluster.Node) {
		st := cluster.NewState()
		n := &cluster.Node{Name: "vg-1", Status: cluster.StatusDead, DownSince: downAt}
		st.Nodes["vg-1"] = n
		st.Nodes["vg-2"] = &cluster.Node{Name: "vg-2", Status: cluster.StatusAlive}
		st.Containers["np"] = &cluster.Container{Name: "np", Node: "vg-1", Desired: cluster.DesiredRunning,
			Config: cluster.ContainerConfig{SnapshotEvery: time.Minute}}
		st.Containers["plain"] = &cluster.Container{Name: "plain", Node: "vg-1", Desired: cluster.DesiredRunning}
		return st, n
	}
	silentSince := func(at time.Time) func(string) (time.Time, bool) {
		return func(string) (time.Time, bool) { return at, true }
	}
	heard := func(string) (time.Time, bool) { return time.Time{}, false }
	tests := []struct {
		name   string
		change func(st *cluster.State, n *cluster.Node)
		self   string
		inRaft bool
		silent func(string) (time.Time, bool)
		want   bool
	}{
		{name: "dead and silent long enough", inRaft: true, silent: silentSince(downAt), want: true},
		{name: "not a raft server: memberlist alone", inRaft: false, silent: heard, want: true},
		{name: "raft still hears it", inRaft: true, silent: heard},
		{name: "raft silent too briefly", inRaft: true, silent: silentSince(now.Add(-2 * time.Second))},
		{name: "dead too briefly", inRaft: true, silent: silentSince(downAt), change: func(_ *cluster.State, n *cluster.Node) { n.DownSince = now.Add(-time.Second) }},
		{name: "only suspect", inRaft: true, silent: silentSince(downAt), change: func(_ *cluster.State, n *cluster.Node) { n.Status = cluster.StatusSuspect }},
		{name: "alive", inRaft: true, silent: silentSince(downAt), change: func(_ *cluster.State, n *cluster.Node) { n.Status, n.DownSince = cluster.StatusAlive, time.Time{} }},
		{name: "itself", self: "vg-1", inRaft: true, silent: silentSince(downAt)},
		{name: "holds nothing with periodic snapshots", inRaft: true, silent: silentSince(downAt), change: func(st *cluster.State, _ *cluster.Node) { delete(st.Containers, "np") }},
		{name: "its container with snapshots is stopped", inRaft: true, silent: silentSince(downAt), change: func(st *cluster.State, _ *cluster.Node) {
			st.Containers["np"].Desired = cluster.DesiredStopped
		}},
		{name: "a drain runs", inRaft: true, silent: silentSince(downAt), change: func(st *cluster.State, _ *cluster.Node) {
			st.Drains["d"] = &cluster.DrainJob{ID: "d", Node: "vg-1", State: cluster.JobRunning, StartedAt: now.Add(-time.Minute)}
		}},
		{name: "failed over since it went down", inRaft: true, silent: silentSince(downAt), change: func(st *cluster.State, _ *cluster.Node) {
			st.Drains["f"] = &cluster.DrainJob{ID: "f", Node: "vg-1", State: cluster.JobFailed, Reason: cluster.ReasonFailover, StartedAt: downAt.Add(6 * time.Second)}
		}},
		{name: "failed over in an earlier time down", inRaft: true, silent: silentSince(downAt), want: true, change: func(st *cluster.State, _ *cluster.Node) {
			st.Drains["f"] = &cluster.DrainJob{ID: "f", Node: "vg-1", State: cluster.JobCommitted, Reason: cluster.ReasonFailover, StartedAt: downAt.Add(-time.Hour)}
		}},
		{name: "its failover left np for want of room, and a node has room now", inRaft: true, silent: silentSince(downAt), want: true,
			change: func(st *cluster.State, _ *cluster.Node) { leftForRoom(st, downAt, true, cluster.JobFailed, true) }},
		{name: "its failover left np for want of room, and still no node has room", inRaft: true, silent: silentSince(downAt),
			change: func(st *cluster.State, _ *cluster.Node) { leftForRoom(st, downAt, true, cluster.JobFailed, false) }},
		{name: "its failover left np after its restores failed", inRaft: true, silent: silentSince(downAt),
			change: func(st *cluster.State, _ *cluster.Node) { leftForRoom(st, downAt, false, cluster.JobFailed, true) }},
		{name: "its failover waiting for room still runs", inRaft: true, silent: silentSince(downAt),
			change: func(st *cluster.State, _ *cluster.Node) {
				leftForRoom(st, downAt, true, cluster.JobFailed, true)
				st.Drains["f"].State = cluster.JobRunning
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, n := base()
			if tt.change != nil {
				tt.change(st, n)
			}
			self := tt.self
			if self == "" {
				self = "vg-2"
			}
			if got := failoverDue(st, n, self, now, delay, tt.inRaft, tt.silent); got != tt.want {
				t.Fatalf("failoverDue = %v, want %v", got, tt.want)
			}
		})
	}
}

// leftForRoom records a failover of vg-1, started after downAt and over, whose item for np ended in state
// (waiting for a place when waiting), and a snapshot of np copied to vg-2, which has room when room.
func leftForRoom(st *cluster.State, downAt time.Time, waiting bool, state cluster.JobState, room bool) {
	st.Nodes["vg-2"].Eligible, st.Nodes["vg-2"].Features = true, map[string]bool{"network_lock": true}
	if room {
		st.Nodes["vg-2"].FreeMemory = 1 << 30
	}
	st.Containers["np"].Config.MemoryBytes = 256 << 20
	st.Snapshots["s1"] = &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-1", Copies: []string{"vg-2"}, Created: downAt.Add(-time.Minute)}
	st.Drains["f"] = &cluster.DrainJob{ID: "f", Node: "vg-1", State: cluster.JobFailed, Reason: cluster.ReasonFailover, StartedAt: downAt.Add(6 * time.Second),
		Items: []cluster.DrainItem{{Container: "np", State: state, Waiting: waiting}, {Container: "plain", State: cluster.JobSkipped}}}
}

func TestLatestRestorableAndTarget(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	st := cluster.NewState()
	usable := map[string]bool{"network_lock": true}
	for _, n := range []*cluster.Node{
		{Name: "vg-1", Status: cluster.StatusDead, DownSince: t0.Add(30 * time.Second)},
		{Name: "vg-2", Status: cluster.StatusAlive, Eligible: true, FreeMemory: 1 << 30, Features: usable},
		{Name: "vg-3", Status: cluster.StatusAlive, Eligible: true, FreeMemory: 1 << 30, Features: usable},
	} {
		st.Nodes[n.Name] = n
	}
	c := &cluster.Container{Name: "np", Node: "vg-1", Desired: cluster.DesiredRunning}
	st.Containers["np"] = c
	put := func(id string, at time.Duration, copies []string, bad bool) {
		st.Snapshots[id] = &cluster.Snapshot{ID: id, Container: "np", Node: "vg-1", Copies: copies, Created: t0.Add(at), Bad: bad}
	}
	put("s1", 0, []string{"vg-2"}, false)
	put("s2", 10*time.Second, []string{"vg-3"}, false)
	put("s3", 20*time.Second, []string{"vg-2"}, true) // failed its checksums
	put("s4", 25*time.Second, nil, false)             // only on the dead node
	sn := latestRestorable(st, "np", "vg-1")
	if sn == nil || sn.ID != "s2" {
		t.Fatalf("latestRestorable = %+v, want s2", sn)
	}
	if lost := lostSince(sn, st.Nodes["vg-1"]); lost != 20*time.Second {
		t.Fatalf("lost %s, want 20s", lost)
	}
	target, err := restoreTarget(st, c, sn, "vg-1", nil)
	if err != nil || target != "vg-3" {
		t.Fatalf("restoreTarget = %q, %v; want vg-3 (it holds the copy)", target, err)
	}
	if target, err := restoreTarget(st, c, sn, "vg-1", []string{"vg-3"}); err != nil || target != "vg-2" {
		t.Fatalf("restoreTarget after vg-3 failed = %q, %v; want vg-2", target, err)
	}
	_, err = restoreTarget(st, c, sn, "vg-1", []string{"vg-2", "vg-3"})
	if err == nil || !strings.Contains(err.Error(), "no node can take np") {
		t.Fatalf("restoreTarget with every node tried: %v", err)
	}
	if got := latestRestorable(st, "other", "vg-1"); got != nil {
		t.Fatalf("a container without snapshots: %+v", got)
	}
}
