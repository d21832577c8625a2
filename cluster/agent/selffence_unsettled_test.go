package agent

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
)

func TestIncomingUnsettledAndGone(t *testing.T) {
	st := cluster.NewState()
	down := time.Now().Add(-2 * time.Minute)
	st.Nodes["vg-1"] = &cluster.Node{Name: "vg-1", Status: cluster.StatusAlive}
	st.Nodes["vg-2"] = &cluster.Node{Name: "vg-2", Status: cluster.StatusDead, DownSince: down}
	st.Nodes["vg-3"] = &cluster.Node{Name: "vg-3", Status: cluster.StatusDead, DownSince: time.Now()}
	st.Containers["np"] = &cluster.Container{Name: "np", Node: "vg-1"}
	st.Containers["mv"] = &cluster.Container{Name: "mv", Node: "vg-1"}
	st.Migrations["m1"] = &cluster.MigrationJob{ID: "m1", Container: "np", Source: "vg-1", Target: "vg-2", State: cluster.JobRunning}
	st.Migrations["m2"] = &cluster.MigrationJob{ID: "m2", Container: "mv", Source: "vg-1", Target: "vg-2", State: cluster.JobRolledBack}
	for _, tt := range []struct {
		name, container, self string
		want                  bool
	}{
		{"restored here, not committed", "np", "vg-2", true},
		{"on its source", "np", "vg-1", false},
		{"its migration is over", "mv", "vg-2", false},
		{"unknown container", "zz", "vg-2", false},
	} {
		if got := incomingUnsettled(st, tt.container, tt.self); got != tt.want {
			t.Errorf("%s: incomingUnsettled = %v, want %v", tt.name, got, tt.want)
		}
	}
	st.Drains["f1"] = &cluster.DrainJob{ID: "f1", Node: "vg-2", Reason: cluster.ReasonFailover, State: cluster.JobRunning,
		Items: []cluster.DrainItem{{Container: "np", State: cluster.JobRunning}, {Container: "mv", State: cluster.JobSkipped}}}
	for _, tt := range []struct {
		container, self string
		want            bool
	}{{"np", "vg-2", true}, {"mv", "vg-2", false}, {"np", "vg-1", false}} {
		if got := failoverPending(st, tt.container, tt.self); got != tt.want {
			t.Errorf("failoverPending(%s on %s) = %v, want %v", tt.container, tt.self, got, tt.want)
		}
	}
	a := &Agent{cfg: Config{FailoverDelay: time.Minute}}
	for _, tt := range []struct {
		node string
		want bool
	}{{"vg-1", false}, {"vg-2", true}, {"vg-3", false}, {"vg-9", true}} {
		if got := a.gone(st, tt.node); got != tt.want {
			t.Errorf("gone(%s) = %v, want %v", tt.node, got, tt.want)
		}
	}
	a.cfg.FailoverDelay = -1 // no failover: no self-fence, so only a node that left is gone
	if a.gone(st, "vg-2") || !a.gone(st, "vg-9") {
		t.Errorf("without failover: gone(vg-2) = %v, gone(vg-9) = %v; want false, true", a.gone(st, "vg-2"), a.gone(st, "vg-9"))
	}
}
