package agent

import (
	"errors"
	"slices"
	"testing"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

func TestCloneTargets(t *testing.T) {
	st := cluster.NewState()
	for _, n := range []struct {
		name string
		free int64
	}{{"vg-1", 1 << 30}, {"vg-2", 300 << 20}, {"vg-3", 4 << 30}} {
		st.Nodes[n.name] = &cluster.Node{Name: n.name, Status: cluster.StatusAlive, Eligible: true, FreeMemory: n.free}
	}
	st.Nodes["vg-4"] = &cluster.Node{Name: "vg-4", Status: cluster.StatusDead, Eligible: true, FreeMemory: 8 << 30}
	st.Containers["big"] = &cluster.Container{Name: "big", Node: "vg-1", Desired: cluster.DesiredRunning, Config: cluster.ContainerConfig{MemoryBytes: 600 << 20}}
	snap := func(mem int64) *cluster.Snapshot {
		return &cluster.Snapshot{ID: "s1", Container: "np", Node: "vg-1", Config: cluster.ContainerConfig{MemoryBytes: mem}}
	}
	tests := []struct {
		name string
		mem  int64
		req  api.CloneRequest
		want []string
		err  error
	}{
		{"on the snapshot's node", 0, api.CloneRequest{Count: 3}, []string{"vg-1", "vg-1", "vg-1"}, nil},
		{"spread, holder first, dead node left out", 0, api.CloneRequest{Count: 4, Spread: true}, []string{"vg-1", "vg-2", "vg-3", "vg-1"}, nil},
		{"spread over the nodes with room", 200 << 20, api.CloneRequest{Count: 5, Spread: true}, []string{"vg-1", "vg-2", "vg-3", "vg-1", "vg-3"}, nil},
		{"more than the node has room for", 200 << 20, api.CloneRequest{Count: 3}, nil, node.ErrState},
		{"pinned", 100 << 20, api.CloneRequest{Count: 2, Node: "vg-2"}, []string{"vg-2", "vg-2"}, nil},
		{"pinned to a dead node", 0, api.CloneRequest{Count: 1, Node: "vg-4"}, nil, node.ErrState},
		{"pinned to an unknown node", 0, api.CloneRequest{Count: 1, Node: "vg-9"}, nil, node.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cloneTargets(st, snap(tt.mem), tt.req)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("targets %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}
