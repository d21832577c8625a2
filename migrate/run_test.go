package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	away    string          // a node that cannot be asked (Running fails)
}

func (f *fakeNodes) call(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	if slices.Contains(strings.Split(f.failAt, ","), name) {
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
	if node == f.away {
		return false, errors.New(node + " does not answer")
	}
	return f.running[node], nil
}

type fakeRecorder struct {
	states []string
	failOn string
	// uncertain: the failures are of unknown outcome (ErrUncertain), not refusals; times: only the first
	// that many writes of failOn fail (0: all).
	uncertain bool
	times     int
	failed    int
}

func (r *fakeRecorder) Record(_ context.Context, _ Job, state, _ string) error {
	r.states = append(r.states, state)
	if state != r.failOn || (r.times > 0 && r.failed >= r.times) {
		return nil
	}
	r.failed++
	if r.uncertain {
		return fmt.Errorf("%w: waiting for the commit: context deadline exceeded", ErrUncertain)
	}
	return errors.New("raft said no")
}

func TestRun(t *testing.T) {
	job := Job{ID: "j1", Container: "np", Image: "busybox", Source: "vg-1", Target: "vg-2", Mode: ModeStopCopy}
	tests := []struct {
		name       string
		failAt     string
		failRecord string
		uncertain  bool
		times      int
		outcome    string
		calls      string
		states     string
	}{
		{"success", "", "", false, 0, StateCommitted,
			"image prepare dump restore finish-commit", "dumping restoring committed"},
		{"image fails", "image", "", false, 0, StateRolledBack,
			"image abort", "rolled-back"},
		{"prepare fails", "prepare", "", false, 0, StateRolledBack,
			"image prepare abort", "rolled-back"},
		{"dump fails", "dump", "", false, 0, StateRolledBack,
			"image prepare dump abort finish-rollback", "dumping rolled-back"},
		{"restore fails", "restore", "", false, 0, StateRolledBack,
			"image prepare dump restore abort finish-rollback", "dumping restoring rolled-back"},
		{"commit refused", "", StateCommitted, false, 0, StateRolledBack,
			"image prepare dump restore abort finish-rollback", "dumping restoring committed rolled-back"},
		{"commit of unknown outcome, taken when tried again", "", StateCommitted, true, 2, StateCommitted,
			"image prepare dump restore finish-commit", "dumping restoring committed committed committed"},
		// Neither copy may go: the commit may have been taken. The job stays open for Recover.
		{"commit of unknown outcome, for good", "", StateCommitted, true, 0, StateUnsettled,
			"image prepare dump restore", "dumping restoring committed committed committed committed committed"},
		// Recorded as over, the job would leave the source frozen for good: it stays open for Recover.
		{"thaw fails", "restore,finish-rollback", "", false, 0, StateUnsettled,
			"image prepare dump restore abort finish-rollback", "dumping restoring"},
		// The target may run it: the source's copy must not thaw.
		{"target cannot be told to drop what it restored", "restore,abort", "", false, 0, StateUnsettled,
			"image prepare dump restore abort", "dumping restoring"},
		// Nothing was restored: the source thaws, the job ends (failed, for the target's trouble).
		{"target cannot be told to drop what it received", "dump,abort", "", false, 0, StateFailed,
			"image prepare dump abort finish-rollback", "dumping failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := &fakeNodes{failAt: tt.failAt, running: map[string]bool{job.Source: true}}
			rec := &fakeRecorder{failOn: tt.failRecord, uncertain: tt.uncertain, times: tt.times}
			rep, err := Run(context.Background(), job, nodes, rec, Options{RetryWait: time.Millisecond})
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
			if got := strings.Join(nodes.calls, " "); got != tt.calls {
				t.Fatalf("calls %q, want %q", got, tt.calls)
			}
			if got := strings.Join(rec.states, " "); got != tt.states {
				t.Fatalf("recorded %q, want %q", got, tt.states)
			}
			if tt.outcome == StateUnsettled {
				if !errors.Is(err, ErrUnsettled) || errors.Is(err, ErrRolledBack) {
					t.Fatalf("error %v does not wrap ErrUnsettled (only)", err)
				}
				if nodes.running[job.Source] {
					t.Fatalf("an unsettled migration must keep the source's copy frozen: %v", nodes.running)
				}
				return
			}
			if !errors.Is(err, ErrRolledBack) {
				t.Fatalf("error %v does not wrap ErrRolledBack", err)
			}
			if nodes.running[job.Target] {
				t.Fatalf("after a roll-back the target must not run the container")
			}
			if tt.outcome == StateRolledBack && !nodes.running[job.Source] {
				t.Fatalf("after a roll-back the source must run the container again")
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
		got, err := Recover(context.Background(), job, nodes, rec, Gone{})
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

// A roll-back that cannot reach a node leaves the job open (to be tried again), never recorded as over with
// the source's copy still frozen.
func TestRecoverKeepsTheJobOpenUntilTheRollBackIsDone(t *testing.T) {
	job := Job{ID: "j1", Container: "np", Source: "vg-1", Target: "vg-2"}
	for _, broken := range []string{"abort", "finish-rollback"} {
		nodes := &fakeNodes{failAt: broken, running: map[string]bool{}}
		rec := &fakeRecorder{}
		if got, err := Recover(context.Background(), job, nodes, rec, Gone{}); err == nil || got != "" || len(rec.states) != 0 {
			t.Fatalf("%s broken: recovered as %q, err %v, recorded %v; want an error and nothing recorded", broken, got, err, rec.states)
		}
		nodes.failAt = ""
		if got, err := Recover(context.Background(), job, nodes, rec, Gone{}); err != nil || got != StateRolledBack || !nodes.running[job.Source] {
			t.Fatalf("%s mended: recovered as %q, err %v, source runs %v", broken, got, err, nodes.running[job.Source])
		}
	}
}

// A target that cannot be asked keeps the job open (and the source frozen) until it is gone for good; then
// the job is rolled back without it.
func TestRecoverWithoutAGoneTarget(t *testing.T) {
	job := Job{ID: "j1", Container: "np", Source: "vg-1", Target: "vg-2"}
	nodes := &fakeNodes{away: job.Target, running: map[string]bool{}}
	rec := &fakeRecorder{}
	if got, err := Recover(context.Background(), job, nodes, rec, Gone{}); err == nil || got != "" || len(rec.states) != 0 || nodes.running[job.Source] {
		t.Fatalf("target away, not gone: recovered as %q, err %v, recorded %v, source runs %v; want an error and nothing done",
			got, err, rec.states, nodes.running[job.Source])
	}
	got, err := Recover(context.Background(), job, nodes, rec, Gone{Target: true})
	if err != nil || got != StateRolledBack || !nodes.running[job.Source] || strings.Join(rec.states, " ") != StateRolledBack {
		t.Fatalf("target gone: recovered as %q, err %v, recorded %v, source runs %v; want rolled back, the source thawed",
			got, err, rec.states, nodes.running[job.Source])
	}
	if got := strings.Join(nodes.calls, " "); got != "finish-rollback" {
		t.Fatalf("calls %q, want only the source's thaw", got)
	}
}

// A gone source is not waited for: a target that runs the container takes it; otherwise the job is rolled
// back without touching the source, so that the dead node's failover, which waits for the job, can go on.
func TestRecoverWithoutAGoneSource(t *testing.T) {
	job := Job{ID: "j1", Container: "np", Source: "vg-1", Target: "vg-2"}
	tests := []struct {
		name      string
		nodes     *fakeNodes
		gone      Gone
		want      string
		wantErr   bool
		wantCalls string
	}{
		{"the target runs it: committed, the source's removal fails", &fakeNodes{failAt: "finish-commit", running: map[string]bool{job.Target: true}},
			Gone{Source: true}, StateCommitted, true, "finish-commit"},
		{"the target has not restored it: rolled back, the source left alone", &fakeNodes{failAt: "finish-rollback", running: map[string]bool{}},
			Gone{Source: true}, StateRolledBack, false, "abort"},
		{"the target cannot drop its copy: kept open", &fakeNodes{failAt: "abort,finish-rollback", running: map[string]bool{}},
			Gone{Source: true}, "", true, "abort"},
		{"both gone", &fakeNodes{away: job.Target, failAt: "finish-rollback", running: map[string]bool{}},
			Gone{Source: true, Target: true}, StateRolledBack, false, ""},
		{"the source only away: kept open", &fakeNodes{failAt: "finish-rollback", running: map[string]bool{}},
			Gone{}, "", true, "abort finish-rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &fakeRecorder{}
			got, err := Recover(context.Background(), job, tt.nodes, rec, tt.gone)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("recovered as %q, err %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
			if want := tt.want; strings.Join(rec.states, " ") != want {
				t.Fatalf("recorded %v, want %q", rec.states, want)
			}
			if got := strings.Join(tt.nodes.calls, " "); got != tt.wantCalls {
				t.Fatalf("calls %q, want %q", got, tt.wantCalls)
			}
		})
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
