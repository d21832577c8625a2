package cluster

import (
	"errors"
	"slices"
	"testing"
)

func TestSnapshotCatalogue(t *testing.T) {
	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"copies of unknown snapshot", &AddSnapshotCopy{ID: "nope", Node: "vg-2"}, ErrUnknownSnapshot},
		{"copies on unknown node", &AddSnapshotCopy{ID: "s1", Node: "vg-9"}, ErrUnknownNode},
		{"second template of a name", &PutSnapshot{Snapshot: Snapshot{ID: "s3", Container: "np", Node: "vg-1", Template: "warm"}}, ErrExists},
		{"copies recorded", &AddSnapshotCopy{ID: "s1", Node: "vg-2"}, nil},
		{"another template", &PutSnapshot{Snapshot: Snapshot{ID: "s3", Container: "np", Node: "vg-1", Template: "cold"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := seeded(t)
			h.must(&PutSnapshot{Snapshot: Snapshot{ID: "s2", Container: "np", Node: "vg-1", Template: "warm",
				Config: ContainerConfig{Args: []string{"redis-server"}}}})
			before := stateJSON(t, h.fsm.State())
			r := h.apply(tt.op)
			if !errors.Is(r.Err, tt.want) {
				t.Fatalf("err = %v, want %v", r.Err, tt.want)
			}
			if tt.want != nil && stateJSON(t, h.fsm.State()) != before {
				t.Fatal("state changed by a rejected command")
			}
		})
	}
}

func TestSnapshotHoldersAndTemplates(t *testing.T) {
	h := seeded(t)
	h.must(&PutSnapshot{Snapshot: Snapshot{ID: "s2", Container: "np", Node: "vg-1", Template: "warm"}})
	h.must(&AddSnapshotCopy{ID: "s2", Node: "vg-2"})
	h.must(&AddSnapshotCopy{ID: "s2", Node: "vg-1"}) // its own node: nothing to add
	h.must(&AddSnapshotCopy{ID: "s2", Node: "vg-2"}) // twice: once
	s := h.fsm.State()
	if got := s.Snapshots["s2"].Holders(); !slices.Equal(got, []string{"vg-1", "vg-2"}) {
		t.Fatalf("holders %v, want [vg-1 vg-2]", got)
	}
	if sn := s.TemplateSnapshot("warm"); sn == nil || sn.ID != "s2" {
		t.Fatalf("template warm: %+v", sn)
	}
	if sn := s.TemplateSnapshot("nope"); sn != nil {
		t.Fatalf("template nope: %+v", sn)
	}
	// The records stay when their container goes: templates outlive their source.
	h.must(&UpdateMigration{ID: "m1", State: JobFailed})
	h.must(&RemoveContainer{Name: "np"})
	if s := h.fsm.State(); s.TemplateSnapshot("warm") == nil || len(s.Snapshots) != 2 {
		t.Fatalf("after the container's removal: %d snapshots", len(s.Snapshots))
	}
}

// Copies recorded one after the other by parallel senders all stay, and a node that leaves takes its copies out
// of the catalogue, so that it does not block the copies recorded after it.
func TestSnapshotCopiesAddUpAndLeaveWithTheirNode(t *testing.T) {
	h := seeded(t)
	h.must(nodeOp("vg-3", 4<<30))
	h.must(&PutSnapshot{Snapshot: Snapshot{ID: "s2", Container: "np", Node: "vg-1"}})
	h.must(&AddSnapshotCopy{ID: "s2", Node: "vg-3"})
	h.must(&AddSnapshotCopy{ID: "s2", Node: "vg-2"})
	if got := h.fsm.State().Snapshots["s2"].Copies; !slices.Equal(got, []string{"vg-3", "vg-2"}) {
		t.Fatalf("copies %v, want [vg-3 vg-2]", got)
	}
	h.must(&RemoveNode{Name: "vg-3"})
	if got := h.fsm.State().Snapshots["s2"].Copies; !slices.Equal(got, []string{"vg-2"}) {
		t.Fatalf("copies after vg-3 left: %v, want [vg-2]", got)
	}
	h.must(nodeOp("vg-4", 4<<30))
	h.must(&AddSnapshotCopy{ID: "s2", Node: "vg-4"})
	if got := h.fsm.State().Snapshots["s2"].Holders(); !slices.Equal(got, []string{"vg-1", "vg-2", "vg-4"}) {
		t.Fatalf("holders %v, want [vg-1 vg-2 vg-4]", got)
	}
}
