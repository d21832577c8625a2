package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
)

func TestLeaveRefusal(t *testing.T) {
	base := func() *cluster.State {
		st := cluster.NewState()
		for _, n := range []string{"vg-1", "vg-2"} {
			st.Nodes[n] = &cluster.Node{Name: n, Status: cluster.StatusAlive, Eligible: true}
		}
		return st
	}
	tests := []struct {
		name    string
		change  func(*cluster.State)
		node    string
		wantErr error
		say     string
	}{
		{"an empty node may leave", func(*cluster.State) {}, "vg-2", nil, ""},
		{"an unknown node", func(*cluster.State) {}, "vg-9", node.ErrNotFound, "ferry node ls"},
		{"a node with a container", func(st *cluster.State) {
			st.Containers["np"] = &cluster.Container{Name: "np", Node: "vg-2"}
		}, "vg-2", node.ErrState, "ferry node drain vg-2"},
		{"a node in a migration under way", func(st *cluster.State) {
			st.Migrations["m1"] = &cluster.MigrationJob{ID: "m1", Container: "np", Source: "vg-1", Target: "vg-2", State: cluster.JobRunning}
		}, "vg-2", node.ErrState, "under way"},
		{"a node with a snapshot's only copy", func(st *cluster.State) {
			st.Snapshots["s1"] = &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-2", Copies: []string{"vg-2"}}
		}, "vg-2", node.ErrState, "ferry snapshot rm"},
		{"a snapshot with another copy does not hold it", func(st *cluster.State) {
			st.Snapshots["s1"] = &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-2", Copies: []string{"vg-2", "vg-1"}}
		}, "vg-2", nil, ""},
		{"a snapshot taken here and never copied is an only copy", func(st *cluster.State) {
			st.Snapshots["s1"] = &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-2"}
		}, "vg-2", node.ErrState, "only copy"},
		{"a snapshot taken elsewhere with a copy here does not hold it", func(st *cluster.State) {
			st.Snapshots["s1"] = &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-1", Copies: []string{"vg-2"}}
		}, "vg-2", nil, ""},
		{"a bad snapshot does not hold it", func(st *cluster.State) {
			st.Snapshots["s1"] = &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-2", Bad: true}
		}, "vg-2", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := base()
			tt.change(st)
			err := leaveRefusal(st, tt.node)
			if !errors.Is(err, tt.wantErr) || (err != nil && !strings.Contains(err.Error(), tt.say)) {
				t.Fatalf("err = %v, want %v saying %q", err, tt.wantErr, tt.say)
			}
		})
	}
}
