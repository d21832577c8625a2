package cluster

import (
	"errors"
	"strings"
	"testing"
)

const mib = 1 << 20

func schedState() *State {
	s := NewState()
	add := func(name string, free int64, mod func(*Node)) {
		n := &Node{Name: name, Status: StatusAlive, Eligible: true, FreeMemory: free, CapacityMemory: 8192 * mib}
		if mod != nil {
			mod(n)
		}
		s.Nodes[name] = n
	}
	add("vg-1", 1024*mib, nil)
	add("vg-2", 2048*mib, nil)
	add("vg-3", 4096*mib, func(n *Node) { n.Eligible = false })
	add("vg-4", 4096*mib, func(n *Node) { n.Status = StatusDead })
	add("vg-5", 4096*mib, func(n *Node) { n.Maintenance = true })
	add("vg-6", 4096*mib, func(n *Node) { n.Status = StatusSuspect })
	// vg-2 holds one container reserving 1536 MiB: 512 MiB left there.
	s.Containers["db"] = &Container{Name: "db", Node: "vg-2", Desired: DesiredRunning, Config: ContainerConfig{MemoryBytes: 1536 * mib}}
	return s
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name    string
		req     PlacementRequest
		want    string
		wantErr error
		msg     string // substring of the error message
	}{
		{name: "spread to fewest containers", req: PlacementRequest{MemoryBytes: 100 * mib}, want: "vg-1"},
		{name: "memory beats spread", req: PlacementRequest{MemoryBytes: 800 * mib}, want: "vg-1"},
		{name: "excluded falls to next", req: PlacementRequest{MemoryBytes: 100 * mib, Exclude: []string{"vg-1"}}, want: "vg-2"},
		{name: "reserved memory counts", req: PlacementRequest{MemoryBytes: 600 * mib, Exclude: []string{"vg-1"}},
			wantErr: ErrNoCapacity, msg: "most free: vg-2 with 512.0 MiB"},
		{name: "nothing big enough", req: PlacementRequest{MemoryBytes: 3 * 1024 * mib},
			wantErr: ErrNoCapacity, msg: "no node has 3.0 GiB free"},
		{name: "pinned ok", req: PlacementRequest{PinnedNode: "vg-2", MemoryBytes: 512 * mib}, want: "vg-2"},
		{name: "pinned unknown", req: PlacementRequest{PinnedNode: "vg-9"}, wantErr: ErrUnknownNode, msg: "node vg-9 is not in the cluster"},
		{name: "pinned draining", req: PlacementRequest{PinnedNode: "vg-3"}, wantErr: ErrNodeDraining,
			msg: "node vg-3 is draining; choose another target or undrain it"},
		{name: "pinned dead", req: PlacementRequest{PinnedNode: "vg-4"}, wantErr: ErrNodeUnavailable, msg: "node vg-4 is dead"},
		{name: "pinned suspect", req: PlacementRequest{PinnedNode: "vg-6"}, wantErr: ErrNodeUnavailable, msg: "suspect"},
		{name: "pinned maintenance", req: PlacementRequest{PinnedNode: "vg-5"}, wantErr: ErrNodeMaintenance, msg: "maintenance off vg-5"},
		{name: "pinned full", req: PlacementRequest{PinnedNode: "vg-2", MemoryBytes: 513 * mib}, wantErr: ErrNoCapacity,
			msg: "node vg-2 has 512.0 MiB free, the container asks for 513.0 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Place(schedState(), tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.msg)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Place = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestPlaceNoUsableNode(t *testing.T) {
	s := schedState()
	for _, n := range s.Nodes {
		n.Eligible = false
	}
	if _, err := Place(s, PlacementRequest{}); !errors.Is(err, ErrNoCapacity) || !strings.Contains(err.Error(), "undrain") {
		t.Fatalf("err = %v", err)
	}
}

func TestPlaceSpreadsEvenly(t *testing.T) {
	s := NewState()
	for _, name := range []string{"a", "b", "c"} {
		s.Nodes[name] = &Node{Name: name, Status: StatusAlive, Eligible: true, FreeMemory: 1 << 40}
	}
	count := map[string]int{}
	for i := range 30 {
		n, err := Place(s, PlacementRequest{MemoryBytes: mib})
		if err != nil {
			t.Fatal(err)
		}
		count[n]++
		name := string(rune('A' + i))
		s.Containers[name] = &Container{Name: name, Node: n, Desired: DesiredRunning, Config: ContainerConfig{MemoryBytes: mib}}
	}
	for n, k := range count {
		if k != 10 {
			t.Fatalf("node %s got %d of 30 containers: %v", n, k, count)
		}
	}
}
