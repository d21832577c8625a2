package agent

import (
	"errors"
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
