package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fsmHarness applies ops straight to an FSM, as raft would.
type fsmHarness struct {
	t     testing.TB
	fsm   *FSM
	index uint64
}

func newHarness(t testing.TB) *fsmHarness { return &fsmHarness{t: t, fsm: NewFSM()} }

func (h *fsmHarness) apply(op Op) Response {
	h.t.Helper()
	cmd, err := NewCommand(op)
	if err != nil {
		h.t.Fatal(err)
	}
	data, _ := json.Marshal(cmd)
	h.index++
	return h.fsm.Apply(&raft.Log{Index: h.index, Data: data, AppendedAt: time.Unix(1700000000, 0)}).(Response)
}

func (h *fsmHarness) must(op Op) Result {
	h.t.Helper()
	r := h.apply(op)
	if r.Err != nil {
		h.t.Fatalf("%s: %v", op.CommandType(), r.Err)
	}
	return r.Result
}

// stateJSON is the state's encoding without the index (which every apply moves).
func stateJSON(t testing.TB, s *State) string {
	s = s.Clone()
	s.Index = 0
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func seeded(t testing.TB) *fsmHarness {
	h := newHarness(t)
	h.must(nodeOp("vg-1", 4<<30))
	h.must(nodeOp("vg-2", 4<<30))
	h.must(containerOp("np", "vg-1", 64<<20))
	h.must(&PutSnapshot{Snapshot: Snapshot{ID: "s1", Container: "np", Node: "vg-1", Copies: []string{"vg-1"}}})
	h.must(&CreateMigration{Job: MigrationJob{ID: "m1", Container: "np", Source: "vg-1", Target: "vg-2", Mode: "stop-copy"}})
	h.must(&CreateDrain{Job: DrainJob{ID: "d1", Node: "vg-2", MaxParallel: 2}})
	h.must(&AddOperator{Operator: Operator{ID: "SHA256:abc", Name: "ann", Role: RoleController, PublicKey: "ssh-ed25519 AAAA"}})
	return h
}

func TestFSMRejectsWithoutTouchingState(t *testing.T) {
	str := func(s string) *string { return &s }
	bad := NodeStatus("gone")
	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"update unknown node", &UpdateNode{Name: "vg-9", FreeMemory: new(int64)}, ErrUnknownNode},
		{"bad node status", &UpdateNode{Name: "vg-1", Status: &bad}, ErrInvalid},
		{"remove unknown node", &RemoveNode{Name: "vg-9"}, ErrUnknownNode},
		{"remove busy node", &RemoveNode{Name: "vg-1"}, ErrNodeInUse},
		{"place on unknown node", containerOp("x", "vg-9", 0), ErrUnknownNode},
		{"place existing", containerOp("np", "vg-2", 0), ErrExists},
		{"update unknown container", &UpdateContainer{Name: "zz", Node: str("vg-2")}, ErrUnknownContainer},
		{"move to unknown node", &UpdateContainer{Name: "np", Node: str("vg-9")}, ErrUnknownNode},
		{"stale generation", &UpdateContainer{Name: "np", Node: str("vg-2"), IfGeneration: 9}, ErrConflict},
		{"remove unknown container", &RemoveContainer{Name: "zz"}, ErrUnknownContainer},
		{"remove migrating container", &RemoveContainer{Name: "np"}, ErrBusy},
		{"image on unknown node", &PutImage{Image: Image{Name: "i", Nodes: []string{"vg-1", "vg-9"}}}, ErrUnknownNode},
		{"snapshot of unknown container", &PutSnapshot{Snapshot: Snapshot{ID: "s2", Container: "zz", Node: "vg-1"}}, ErrUnknownContainer},
		{"snapshot copy on unknown node", &PutSnapshot{Snapshot: Snapshot{ID: "s2", Container: "np", Node: "vg-1", Copies: []string{"vg-9"}}}, ErrUnknownNode},
		{"duplicate snapshot", &PutSnapshot{Snapshot: Snapshot{ID: "s1", Container: "np", Node: "vg-1"}}, ErrExists},
		{"bad unknown snapshot", &MarkSnapshotBad{ID: "nope"}, ErrUnknownSnapshot},
		{"migrate unknown container", &CreateMigration{Job: MigrationJob{ID: "m2", Container: "zz", Source: "vg-1", Target: "vg-2"}}, ErrUnknownContainer},
		{"migrate to unknown node", &CreateMigration{Job: MigrationJob{ID: "m2", Container: "np", Source: "vg-1", Target: "vg-9"}}, ErrUnknownNode},
		{"second migration", &CreateMigration{Job: MigrationJob{ID: "m2", Container: "np", Source: "vg-1", Target: "vg-2"}}, ErrBusy},
		{"update unknown migration", &UpdateMigration{ID: "m9", State: JobFailed}, ErrUnknownJob},
		{"drain unknown node", &CreateDrain{Job: DrainJob{ID: "d2", Node: "vg-9"}}, ErrUnknownNode},
		{"second drain", &CreateDrain{Job: DrainJob{ID: "d2", Node: "vg-2"}}, ErrBusy},
		{"remove unknown operator", &RemoveOperator{ID: "SHA256:zzz"}, ErrUnknownOperator},
		{"duplicate operator", &AddOperator{Operator: Operator{ID: "SHA256:abc", Role: RoleViewer, PublicKey: "k"}}, ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := seeded(t)
			before := stateJSON(t, h.fsm.State())
			r := h.apply(tt.op)
			if !errors.Is(r.Err, tt.want) {
				t.Fatalf("err = %v, want %v", r.Err, tt.want)
			}
			if after := stateJSON(t, h.fsm.State()); after != before {
				t.Fatalf("state changed by a rejected command:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestFSMUndecodableCommand(t *testing.T) {
	f := NewFSM()
	for _, data := range [][]byte{[]byte("{"), []byte(`{"type":"nope","payload":{}}`), []byte(`{"type":"place-container","payload":[1]}`)} {
		r := f.Apply(&raft.Log{Index: 1, Data: data}).(Response)
		if !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", data, r.Err)
		}
	}
}

func TestMigrationCommitMovesContainer(t *testing.T) {
	h := seeded(t)
	for _, st := range []JobState{JobDumping, JobStreaming, JobRestoring} {
		h.must(&UpdateMigration{ID: "m1", State: st})
	}
	res := h.must(&UpdateMigration{ID: "m1", State: JobCommitted})
	s := h.fsm.State()
	if c := s.Containers["np"]; c.Node != "vg-2" || c.Generation != 2 || res.Generation != 2 {
		t.Fatalf("after commit: %+v, result %+v", c, res)
	}
	if r := h.apply(&UpdateMigration{ID: "m1", State: JobRolledBack}); !errors.Is(r.Err, ErrInvalidTransition) {
		t.Fatalf("roll back after commit: %v", r.Err)
	}
	if s.Nodes["vg-2"].Eligible {
		t.Fatal("CreateDrain did not make vg-2 ineligible")
	}
}

func TestFSMOpsRoundTrip(t *testing.T) {
	// Every command type decodes from its own encoding.
	for typ, mk := range opTypes {
		cmd, err := NewCommand(mk())
		if err != nil || cmd.Type != typ {
			t.Fatalf("%s: %v %v", typ, cmd.Type, err)
		}
		if _, err := cmd.Decode(); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
}

// bigState builds the benchmark state: nodes, 1,000 containers and
// 10,000 snapshot records.
func bigState(t testing.TB) *fsmHarness {
	h := newHarness(t)
	for i := range 5 {
		h.must(nodeOp(fmt.Sprintf("vg-%d", i+1), 64<<30))
	}
	for i := range 1000 {
		h.must(containerOp(fmt.Sprintf("c%04d", i), fmt.Sprintf("vg-%d", i%5+1), 64<<20))
	}
	for i := range 10000 {
		h.must(&PutSnapshot{Snapshot: Snapshot{
			ID: fmt.Sprintf("snap-%05d", i), Container: fmt.Sprintf("c%04d", i%1000),
			Node: fmt.Sprintf("vg-%d", i%5+1), Copies: []string{"vg-1", "vg-2"}, Size: int64(i) << 20,
		}})
	}
	return h
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	h := bigState(t)
	want := h.fsm.State()
	start := time.Now()
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after Snapshot must not leak into the persisted snapshot.
	h.must(containerOp("late", "vg-1", 0))
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	persisted := time.Since(start)
	size := sink.Len()

	start = time.Now()
	f := NewFSM()
	if err := f.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot %d KiB in %s, restore in %s", size>>10, persisted, time.Since(start))
	got := f.State()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state differs: %d/%d containers, %d/%d snapshots",
			len(got.Containers), len(want.Containers), len(got.Snapshots), len(want.Snapshots))
	}
	if len(got.Containers) != 1000 || len(got.Snapshots) != 10000 {
		t.Fatalf("got %d containers, %d snapshots", len(got.Containers), len(got.Snapshots))
	}
}

func TestRestoreRejectsTruncatedSnapshot(t *testing.T) {
	h := seeded(t)
	var buf bytes.Buffer
	if err := WriteState(&buf, h.fsm.State()); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	cut := b[:bytes.LastIndexByte(b[:len(b)-1], '\n')+1] // drop the trailer
	if _, err := ReadState(bytes.NewReader(cut)); err == nil {
		t.Fatal("truncated snapshot restored")
	}
	f := seeded(t).fsm
	before := stateJSON(t, f.State())
	if err := f.Restore(io.NopCloser(bytes.NewReader(cut))); err == nil {
		t.Fatal("Restore accepted a truncated snapshot")
	}
	if stateJSON(t, f.State()) != before {
		t.Fatal("failed Restore changed the state")
	}
}

func BenchmarkFSMApply(b *testing.B) {
	h := bigState(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		free := int64(i)
		h.must(&UpdateNode{Name: "vg-1", FreeMemory: &free})
	}
}

func BenchmarkSnapshotRestore(b *testing.B) {
	h := bigState(b)
	b.ResetTimer()
	var size int
	for b.Loop() {
		snap, _ := h.fsm.Snapshot()
		var sink memSink
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		size = sink.Len()
		if err := NewFSM().Restore(io.NopCloser(&sink)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size), "snapshot-bytes")
}
