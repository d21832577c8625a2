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
		{"copies of unknown snapshot", &SetSnapshotCopies{ID: "nope", Copies: []string{"vg-2"}}, ErrUnknownSnapshot},
		{"copies on unknown node", &SetSnapshotCopies{ID: "s1", Copies: []string{"vg-9"}}, ErrUnknownNode},
		{"second template of a name", &PutSnapshot{Snapshot: Snapshot{ID: "s3", Container: "np", Node: "vg-1", Template: "warm"}}, ErrExists},
		{"copies recorded", &SetSnapshotCopies{ID: "s1", Copies: []string{"vg-2"}}, nil},
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
	h.must(&SetSnapshotCopies{ID: "s2", Copies: []string{"vg-2", "vg-1"}})
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
