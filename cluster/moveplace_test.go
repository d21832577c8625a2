package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPlaceMove(t *testing.T) {
	noCRIU := func(n *Node) error {
		if n.Name == "vg-1" {
			return errors.New("vg-1's CRIU cannot restore it")
		}
		return nil
	}
	inflight := func(s *State) {
		// Two migrations already on their way to vg-1: it counts as holding two.
		s.Containers["a"] = &Container{Name: "a", Node: "vg-9", Desired: DesiredRunning}
		s.Containers["b"] = &Container{Name: "b", Node: "vg-9", Desired: DesiredRunning}
		s.Migrations["m1"] = &MigrationJob{ID: "m1", Container: "a", Source: "vg-9", Target: "vg-1", State: JobDumping}
		s.Migrations["m2"] = &MigrationJob{ID: "m2", Container: "b", Source: "vg-9", Target: "vg-1", State: JobPlanned}
		s.Migrations["m3"] = &MigrationJob{ID: "m3", Container: "b", Source: "vg-9", Target: "vg-2", State: JobRolledBack}
	}
	tests := []struct {
		name    string
		req     MoveRequest
		mod     func(*State)
		want    string
		wantErr error
		msg     string
	}{
		{name: "spread to fewest containers", req: MoveRequest{Container: "x", MemoryBytes: 100 * mib}, want: "vg-1"},
		{name: "in-flight migrations count", req: MoveRequest{Container: "x"}, mod: inflight, want: "vg-2"},
		{name: "failed target excluded", req: MoveRequest{Container: "x", Exclude: []string{"vg-1"}}, want: "vg-2"},
		{name: "incompatible CRIU skipped", req: MoveRequest{Container: "x", Compatible: noCRIU}, want: "vg-2"},
		{name: "memory limit decides", req: MoveRequest{Container: "x", MemoryBytes: 800 * mib, Exclude: []string{"vg-1"}},
			wantErr: ErrNoCapacity, msg: "vg-2 has 512.0 MiB free"},
		{name: "nowhere says why", req: MoveRequest{Container: "x", Exclude: []string{"vg-1", "vg-2"}},
			wantErr: ErrNoCapacity, msg: "vg-3 is draining; vg-4 is dead; vg-5 is in maintenance; vg-6 is suspect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := schedState()
			if tt.mod != nil {
				tt.mod(s)
			}
			got, err := PlaceMove(s, tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.msg)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PlaceMove = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestUpdateDrain(t *testing.T) {
	s := schedState()
	s.Containers["np"] = &Container{Name: "np", Node: "vg-1", Desired: DesiredRunning}
	at := time.Unix(1700000000, 0)
	apply := func(op Op) error { at = at.Add(time.Second); _, err := op.apply(s, at); return err }
	if err := apply(&CreateDrain{Job: DrainJob{ID: "d1", Node: "vg-1", Items: []DrainItem{{Container: "np", State: JobPlanned}}}}); err != nil {
		t.Fatal(err)
	}
	if s.Nodes["vg-1"].Eligible {
		t.Fatal("a drained node stays eligible")
	}
	// Items alone: the state stays.
	if err := apply(&UpdateDrain{ID: "d1", Items: []DrainItem{{Container: "np", State: JobRunning, Target: "vg-2"}}}); err != nil {
		t.Fatal(err)
	}
	if d := s.Drains["d1"]; d.State != JobPlanned || d.Items[0].State != JobRunning {
		t.Fatalf("after an items update: %+v", d)
	}
	if err := apply(&UpdateDrain{ID: "d1", State: JobFailed, Error: "cancelled"}); err != nil {
		t.Fatal(err)
	}
	if d := s.Drains["d1"]; d.Error != "cancelled" || d.FinishedAt.IsZero() {
		t.Fatalf("after failing: %+v", d)
	}
	// A migration running when the job was cancelled still records its outcome, but the state stays.
	if err := apply(&UpdateDrain{ID: "d1", Items: []DrainItem{{Container: "np", State: JobCommitted, Target: "vg-2"}}}); err != nil {
		t.Fatalf("items of a final job: %v", err)
	}
	if err := apply(&UpdateDrain{ID: "d1", State: JobRunning}); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("a final drain became running again: %v", err)
	}
	if err := apply(&UpdateDrain{ID: "d1", State: JobSkipped}); !errors.Is(err, ErrInvalidTransition) {
		t.Fatalf("a drain job became skipped: %v", err)
	}
	if err := apply(&CreateDrain{Job: DrainJob{ID: "d2", Node: "vg-1"}}); err != nil {
		t.Fatalf("a new drain after a final one: %v", err)
	}
	if got := s.LatestDrain("vg-1"); got == nil || got.ID != "d2" {
		t.Fatalf("latest drain: %+v", got)
	}
	if got := s.UnfinishedDrains(); len(got) != 1 || got[0].ID != "d2" {
		t.Fatalf("unfinished drains: %+v", got)
	}
}
