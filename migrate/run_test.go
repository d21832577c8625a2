package migrate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNodes records the calls and fails the step named in failAt.
type fakeNodes struct {
	mu      sync.Mutex
	failAt  string
	calls   []string
	running map[string]bool // node -> runs the container
}

func (f *fakeNodes) call(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	if f.failAt == name {
		return errors.New(name + " broke")
	}
	return nil
}

func (f *fakeNodes) EnsureImage(context.Context, Job) error { return f.call("image") }
func (f *fakeNodes) Prepare(context.Context, Job) error     { return f.call("prepare") }
func (f *fakeNodes) Dump(_ context.Context, j Job, _ func(Progress)) (*DumpResult, error) {
	if err := f.call("dump"); err != nil {
		return nil, err
	}
	f.running[j.Source] = false // frozen
	return &DumpResult{FrozenAt: time.Now(), PagesBytes: 100, StreamRaw: 10, StreamWire: 5}, nil
}
func (f *fakeNodes) Restore(_ context.Context, j Job, _ *DumpResult) (*RestoreResult, error) {
	if err := f.call("restore"); err != nil {
		return nil, err
	}
	f.running[j.Target] = true
	return &RestoreResult{RunningAt: time.Now().Add(time.Millisecond)}, nil
}
func (f *fakeNodes) Finish(_ context.Context, j Job, commit bool) error {
	name := "finish-rollback"
	if commit {
		name = "finish-commit"
	}
	if err := f.call(name); err != nil {
		return err
	}
	f.running[j.Source] = !commit
	return nil
}
func (f *fakeNodes) Abort(_ context.Context, j Job) error {
	f.running[j.Target] = false
	return f.call("abort")
}
func (f *fakeNodes) Running(_ context.Context, node, _ string) (bool, error) {
	return f.running[node], nil
}

type fakeRecorder struct {
	states []string
	failOn string
}

func (r *fakeRecorder) Record(_ context.Context, _ Job, state, _ string) error {
	r.states = append(r.states, state)
	if state == r.failOn {
		return errors.New("raft said no")
	}
	return nil
}

func TestRun(t *testing.T) {
	job := Job{ID: "j1", Container: "np", Image: "busybox", Source: "vg-1", Target: "vg-2", Mode: ModeStopCopy}
	tests := []struct {
		name       string
		failAt     string
		failRecord string
		outcome    string
		calls      string
		states     string
	}{
		{"success", "", "", StateCommitted,
			"image prepare dump restore finish-commit", "dumping restoring committed"},
		{"image fails", "image", "", StateRolledBack,
			"image abort", "rolled-back"},
		{"prepare fails", "prepare", "", StateRolledBack,
			"image prepare abort", "rolled-back"},
		{"dump fails", "dump", "", StateRolledBack,
			"image prepare dump abort finish-rollback", "dumping rolled-back"},
		{"restore fails", "restore", "", StateRolledBack,
			"image prepare dump restore abort finish-rollback", "dumping restoring rolled-back"},
		{"commit cannot be recorded", "", StateCommitted, StateRolledBack,
			"image prepare dump restore abort finish-rollback", "dumping restoring committed rolled-back"},
		{"roll-back has trouble", "finish-rollback", StateRestoring, StateFailed,
			"image prepare dump abort finish-rollback", "dumping restoring failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := &fakeNodes{failAt: tt.failAt, running: map[string]bool{job.Source: true}}
			rec := &fakeRecorder{failOn: tt.failRecord}
			rep, err := Run(context.Background(), job, nodes, rec, Options{})
			if rep.Outcome != tt.outcome {
				t.Fatalf("outcome %q, want %q (err %v)", rep.Outcome, tt.outcome, err)
			}
			if tt.outcome == StateCommitted {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				if !nodes.running[job.Target] || nodes.running[job.Source] {
					t.Fatalf("after a commit the container must run on the target only: %v", nodes.running)
				}
				if rep.BytesRaw != 110 || rep.BytesSent != 105 || rep.Downtime <= 0 {
					t.Fatalf("report figures: %+v", rep)
				}
				return
			}
			if !errors.Is(err, ErrRolledBack) {
				t.Fatalf("error %v does not wrap ErrRolledBack", err)
			}
			if nodes.running[job.Target] {
				t.Fatalf("after a roll-back the target must not run the container")
			}
			if tt.calls != "" {
				if got := strings.Join(nodes.calls, " "); got != tt.calls {
					t.Fatalf("calls %q, want %q", got, tt.calls)
				}
				if got := strings.Join(rec.states, " "); got != tt.states {
					t.Fatalf("recorded %q, want %q", got, tt.states)
				}
				if tt.outcome == StateRolledBack && !nodes.running[job.Source] {
					t.Fatalf("after a roll-back the source must run the container again")
				}
			}
			if !strings.Contains(err.Error(), "goes on on vg-1") {
				t.Fatalf("error does not say where the container goes on: %v", err)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	job := Job{ID: "j1", Container: "np", Source: "vg-1", Target: "vg-2"}
	for _, targetRuns := range []bool{true, false} {
		nodes := &fakeNodes{running: map[string]bool{job.Target: targetRuns}}
		rec := &fakeRecorder{}
		got, err := Recover(context.Background(), job, nodes, rec)
		if err != nil {
			t.Fatal(err)
		}
		want := StateRolledBack
		if targetRuns {
			want = StateCommitted
		}
		if got != want || rec.states[len(rec.states)-1] != want {
			t.Fatalf("target runs=%v: recovered as %s (recorded %v), want %s", targetRuns, got, rec.states, want)
		}
		if nodes.running[job.Target] == nodes.running[job.Source] {
			t.Fatalf("after recovery the container must run in exactly one place: %v", nodes.running)
		}
	}
}

func TestChooseMode(t *testing.T) {
	dirty := []string{"mem_dirty_track", "uffd"}
	plain := []string{"uffd"}
	tests := []struct {
		req, want, err string
		src, dst       []string
	}{
		{"auto", ModePreCopy, "", dirty, dirty},
		{"auto", ModeStopCopy, "", dirty, plain},
		{"", ModeStopCopy, "", plain, plain},
		{"stop-copy", ModeStopCopy, "", plain, plain},
		{"pre-copy", "", "vg-2 lack", dirty, plain},
		{"post-copy", "post-copy", "", plain, plain},
		{"post-copy", "", "userfaultfd", nil, plain},
		{"sideways", "", "unknown mode", plain, plain},
	}
	for _, tt := range tests {
		got, err := ChooseMode(tt.req, "vg-1", "vg-2", tt.src, tt.dst)
		if tt.err != "" {
			if !errors.Is(err, ErrMode) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ChooseMode(%q) error %v, want ErrMode saying %q", tt.req, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ChooseMode(%q, %v, %v) = %q, %v; want %q", tt.req, tt.src, tt.dst, got, err, tt.want)
		}
	}
}
