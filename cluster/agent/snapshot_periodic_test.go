package agent

import (
	"strings"
	"testing"

	"github.com/ferryhq/ferry/cluster"
)

func TestPeriodicToDrop(t *testing.T) {
	// s builds snapshots from a spec per snapshot, oldest first: "c" a copy on another node, "b" bad, "-" neither.
	s := func(specs ...string) []*cluster.Snapshot {
		var out []*cluster.Snapshot
		for i, sp := range specs {
			sn := &cluster.Snapshot{ID: string(rune('a' + i)), Node: "vg-1", Copies: []string{"vg-1"}}
			if strings.Contains(sp, "c") {
				sn.Copies = append(sn.Copies, "vg-2")
			}
			sn.Bad = strings.Contains(sp, "b")
			out = append(out, sn)
		}
		return out
	}
	tests := []struct {
		name string
		auto []*cluster.Snapshot
		keep int
		want string
	}{
		{"no more than keep", s("c", "c"), 2, ""},
		{"the oldest beyond keep", s("c", "c", "c", "c"), 2, "ab"},
		{"a kept one has a copy", s("c", "-", "c"), 2, "a"},
		{"the newest copied one outlives keep when the kept have no copy", s("c", "c", "-", "-"), 2, "a"},
		{"a bad copy does not count", s("c", "cb"), 1, ""},
		{"nothing was ever copied (one node)", s("-", "-", "-"), 1, "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			for _, sn := range periodicToDrop(tt.auto, tt.keep) {
				got += sn.ID
			}
			if got != tt.want {
				t.Fatalf("dropped %q, want %q", got, tt.want)
			}
		})
	}
}
