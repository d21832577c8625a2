package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

func TestDrainRequestCheck(t *testing.T) {
	tests := []struct {
		name   string
		req    drainRequest
		msg    string // "" means valid
		wantMP int
	}{
		{name: "defaults", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1"}}, wantMP: 1},
		{name: "parallel kept", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1", MaxParallel: 3}}, wantMP: 3},
		{name: "no node", req: drainRequest{}, msg: "name the node to drain"},
		{name: "force with a deadline", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1", Force: true, Deadline: time.Minute}}, wantMP: 1},
		{name: "force without a deadline", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1", Force: true}}, msg: "--force needs --deadline"},
		{name: "too parallel", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1", MaxParallel: 17}}, msg: "use 1 to 16"},
		{name: "negative deadline", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1", Deadline: -time.Second}}, msg: "positive duration"},
		{name: "unknown reason", req: drainRequest{DrainRequest: api.DrainRequest{Node: "vg-1"}, Reason: "whim"}, msg: "not drain, maintenance or shutdown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.check()
			if tt.msg == "" {
				if err != nil || tt.req.MaxParallel != tt.wantMP || tt.req.Reason != reasonDrain {
					t.Fatalf("check = %v, request %+v", err, tt.req)
				}
				return
			}
			if !errors.Is(err, node.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("check = %v, want ErrInvalid with %q", err, tt.msg)
			}
		})
	}
}

func TestSkipReason(t *testing.T) {
	run := &cluster.Container{Name: "a", Desired: cluster.DesiredRunning}
	stay := &cluster.Container{Name: "b", Desired: cluster.DesiredRunning, Config: cluster.ContainerConfig{NoMigrate: true}}
	stopped := &cluster.Container{Name: "c", Desired: cluster.DesiredStopped}
	if got := skipReason(run, "vg-1"); got != "" {
		t.Fatalf("a running container is skipped: %s", got)
	}
	if got := skipReason(stay, "vg-1"); !strings.Contains(got, "--no-migrate") {
		t.Fatalf("no-migrate: %q", got)
	}
	if got := skipReason(stopped, "vg-1"); !strings.Contains(got, "not running") {
		t.Fatalf("stopped: %q", got)
	}
}

func TestCriuCompatible(t *testing.T) {
	src := &cluster.Node{Name: "vg-1", Features: map[string]bool{"network_lock": true}}
	ok := &cluster.Node{Name: "vg-2", Features: map[string]bool{"network_lock": true}}
	broken := &cluster.Node{Name: "vg-3"}
	if err := criuCompatible(src, ok); err != nil {
		t.Fatal(err)
	}
	if err := criuCompatible(src, broken); err == nil || !strings.Contains(err.Error(), "vg-3's CRIU cannot be used") {
		t.Fatalf("a node without a working CRIU: %v", err)
	}
}

func TestDrainReport(t *testing.T) {
	start := time.Unix(1700000000, 0)
	j := &cluster.DrainJob{ID: "d", Node: "vg-1", State: cluster.JobFailed, StartedAt: start, FinishedAt: start.Add(3 * time.Second),
		Items: []cluster.DrainItem{
			{Container: "a", State: cluster.JobCommitted, Target: "vg-2", Downtime: time.Second},
			{Container: "b", State: cluster.JobFailed, Error: "no room"},
			{Container: "c", State: cluster.JobSkipped, Error: "--no-migrate"},
			{Container: "d", State: cluster.JobSnapshotted, Snapshot: "s1", Error: "no room; snapshotted"},
			{Container: "e", State: cluster.JobRestored, Target: "vg-3", Snapshot: "s2", Lost: 2 * time.Second},
		}}
	r := drainReport(j)
	if r.Moved != 2 || r.Stayed != 2 || r.Stopped != 1 || r.Took != 3*time.Second || len(r.Items) != 5 || r.Items[0].Downtime != time.Second {
		t.Fatalf("report: %+v", r)
	}
	if it := r.Items[3]; it.State != "snapshotted" || it.Snapshot != "s1" {
		t.Fatalf("snapshotted item: %+v", it)
	}
	if it := r.Items[4]; it.State != "restored" || it.Snapshot != "s2" || it.Lost != 2*time.Second {
		t.Fatalf("restored item: %+v", it)
	}
}

// A drain takes care of the node's containers and of those a migration started before it brings to the node.
func TestDrainItems(t *testing.T) {
	st := cluster.NewState()
	st.Containers["a"] = &cluster.Container{Name: "a", Node: "vg-1"}
	st.Containers["b"] = &cluster.Container{Name: "b", Node: "vg-2"}
	st.Containers["c"] = &cluster.Container{Name: "c", Node: "vg-2"}
	st.Containers["d"] = &cluster.Container{Name: "d", Node: "vg-3"}
	st.Migrations["m1"] = &cluster.MigrationJob{ID: "m1", Container: "b", Source: "vg-2", Target: "vg-1", State: cluster.JobRunning}
	st.Migrations["m2"] = &cluster.MigrationJob{ID: "m2", Container: "c", Source: "vg-2", Target: "vg-1", State: cluster.JobRolledBack}
	st.Migrations["m3"] = &cluster.MigrationJob{ID: "m3", Container: "d", Source: "vg-3", Target: "vg-2", State: cluster.JobRunning}
	var got []string
	for _, it := range drainItems(st, "vg-1") {
		if it.State != cluster.JobPlanned {
			t.Fatalf("item %s is %s, want planned", it.Container, it.State)
		}
		got = append(got, it.Container)
	}
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("drain of vg-1 takes care of %v, want %v", got, want)
	}
}
