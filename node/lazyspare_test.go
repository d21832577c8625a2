package node

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// fakeLazyPages writes a stand-in for `criu lazy-pages`: it changes into its work directory (as CRIU does),
// creates the socket file there and waits to be killed.
func fakeLazyPages(t *testing.T) string {
	return fakeCRIU(t, "cd \"$5\" || exit 1\n: > lazy-pages.socket\nexec sleep 300\n")
}

// fakeCRIU writes a shell script standing in for criu, run as `criu lazy-pages --images-dir I --work-dir W ...`.
func fakeCRIU(t *testing.T, body string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n# lazy-pages --images-dir I --work-dir W ...\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func newTestSpares(t *testing.T, dir, bin string) (*lazySpares, context.CancelFunc, *sync.WaitGroup) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	shim := filepath.Join(t.TempDir(), "ferry")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\n# a parked shim: waits for its configuration on fd 4\nexec cat <&4 >/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	park := func() (*runtime.ParkedShim, error) { return runtime.ParkShim(shim) }
	s := newLazySpares(ctx, dir, criu.Exec{Path: bin}, park, slog.New(slog.NewTextHandler(testWriter{t}, nil)), &wg)
	t.Cleanup(func() { cancel(); wg.Wait(); s.close() })
	return s, cancel, &wg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// spareDirs lists the spare work directories and the pids their daemons wrote, waiting until n are ready.
func spareDirs(t *testing.T, dir string, n int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := map[string]int{}
		ents, _ := os.ReadDir(dir)
		for _, de := range ents {
			b, err := os.ReadFile(filepath.Join(dir, de.Name(), sparePidFile))
			if pid, perr := strconv.Atoi(string(b)); err == nil && perr == nil {
				out[de.Name()] = pid
			}
		}
		if len(out) == n && len(ents) == n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d ready spares in %s, have %v (%d directories)", n, dir, out, len(ents))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// niceOf reads a process's nice value from /proc (the 19th field of stat).
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// autogroupNice reads the nice value of a process's session's autogroup ("/autogroup-N nice X"); ok is
// false where the kernel has no autogroups.
func autogroupNice(t *testing.T, pid int) (int, bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/autogroup")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		t.Fatalf("/proc/%d/autogroup: %q", pid, b)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatal(err)
	}
	return n, true
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.Alive(pid) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(b), ") Z ") {
			return // ended, not yet reaped by its parent
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLazySpares(t *testing.T) {
	bin := fakeLazyPages(t)
	ck := &checkpoint.Checkpoint{ID: checkpoint.NewID(time.Now()), Dir: t.TempDir()}
	ctx := context.Background()

	t.Run("a clone takes a spare and a new one is started after it", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		s.prepare(ck)
		first := spareDirs(t, dir, templateSpares)
		for _, pid := range first {
			if n := niceOf(t, pid); n != spareNice {
				t.Fatalf("a spare runs at nice %d, want %d", n, spareNice)
			}
			if n, ok := autogroupNice(t, pid); ok && n != spareNice {
				t.Fatalf("a spare's session runs at nice %d, want %d", n, spareNice)
			}
		}
		s.mu.Lock()
		for _, sp := range s.ready[ck.ID] {
			if n, ok := autogroupNice(t, sp.shim.Pid()); ok && n != spareNice {
				t.Errorf("a spare's parked shim's session runs at nice %d, want %d", n, spareNice)
			}
		}
		s.mu.Unlock()
		start, end := s.begin(ck)
		work := filepath.Join(t.TempDir(), "restore-work")
		if err := os.MkdirAll(work, 0o700); err != nil {
			t.Fatal(err)
		}
		lp, shim, err := start(ctx, work)
		if err != nil {
			t.Fatal(err)
		}
		if shim == nil {
			t.Fatal("the spare handed over no parked shim")
		}
		if n := niceOf(t, shim.Pid()); n != 0 {
			t.Fatalf("the parked shim handed over runs at nice %d, want 0 (runc and its container inherit it)", n)
		}
		if n, ok := autogroupNice(t, shim.Pid()); ok && n != 0 {
			t.Fatalf("the parked shim handed over has its session at nice %d, want 0", n)
		}
		shim.Discard()
		taken := ""
		for name, pid := range first {
			if lp.Pid() == pid {
				taken = name
			}
		}
		if taken == "" {
			t.Fatalf("the clone got daemon %d, not a spare of %v", lp.Pid(), first)
		}
		if _, err := os.Stat(filepath.Join(dir, taken)); !os.IsNotExist(err) {
			t.Fatalf("the spare's directory is still there: %v", err)
		}
		if n := niceOf(t, lp.Pid()); n != 0 {
			t.Fatalf("the taken spare runs at nice %d, want 0 (the clone waits for the faults it serves)", n)
		}
		if n, ok := autogroupNice(t, lp.Pid()); ok && n != 0 {
			t.Fatalf("the taken spare's session runs at nice %d, want 0", n)
		}
		if _, err := os.Stat(filepath.Join(work, "lazy-pages.socket")); err != nil {
			t.Fatalf("the daemon's socket did not move with its directory: %v", err)
		}
		if cwd, _ := os.Readlink("/proc/" + strconv.Itoa(lp.Pid()) + "/cwd"); cwd != work {
			t.Fatalf("the daemon works in %q, want %q", cwd, work)
		}
		if len(spareDirs(t, dir, templateSpares-1)) != templateSpares-1 {
			t.Fatal("a spare was started while a clone was starting")
		}
		end()
		end() // a second call changes nothing
		// The restore lowers it once it fills in the rest of the memory, after the lazy hold.
		lowerWhenFilling(lp, 300*time.Millisecond)
		if n := niceOf(t, lp.Pid()); n != 0 {
			t.Fatalf("the clone's daemon runs at nice %d within the hold, want 0", n)
		}
		time.Sleep(600 * time.Millisecond)
		if n := niceOf(t, lp.Pid()); n != lazyNice {
			t.Fatalf("the clone's daemon runs at nice %d after the hold, want %d", n, lazyNice)
		}
		if n, ok := autogroupNice(t, lp.Pid()); ok && n != lazyNice {
			t.Fatalf("the clone's daemon's session runs at nice %d after the hold, want %d", n, lazyNice)
		}
		next := spareDirs(t, dir, templateSpares)
		for _, pid := range next {
			if pid == lp.Pid() {
				t.Fatal("the new spare is the daemon the clone took")
			}
		}
		lp.Stop()
	})

	t.Run("spares wait while a clone starts, except the one it waits for", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		start, end := s.begin(ck)
		s.prepare(ck)
		time.Sleep(300 * time.Millisecond)
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%d spares started while a clone was starting", len(ents))
		}
		work := filepath.Join(t.TempDir(), "restore-work")
		if err := os.MkdirAll(work, 0o700); err != nil {
			t.Fatal(err)
		}
		lp, _, err := start(ctx, work) // takes the first spare, which starts now
		if err != nil {
			t.Fatal(err)
		}
		defer lp.Stop()
		if cwd, _ := os.Readlink("/proc/" + strconv.Itoa(lp.Pid()) + "/cwd"); cwd != work {
			t.Fatalf("the clone's daemon works in %q, want the spare moved to %q", cwd, work)
		}
		time.Sleep(300 * time.Millisecond)
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%d other spares started while the clone was starting", len(ents))
		}
		end()
		spareDirs(t, dir, templateSpares)
	})

	t.Run("without a spare the clone starts its own daemon; a burst is remembered", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		var ends []func()
		for i := range 3 {
			start, end := s.begin(ck)
			ends = append(ends, end)
			work := filepath.Join(t.TempDir(), "w"+strconv.Itoa(i))
			if err := os.MkdirAll(work, 0o700); err != nil {
				t.Fatal(err)
			}
			lp, _, err := start(ctx, work)
			if err != nil {
				t.Fatal(err)
			}
			defer lp.Stop()
		}
		ends[0]()
		ends[1]()
		if len(spareDirs(t, dir, 0)) != 0 {
			t.Fatal("spares were started before the burst ended")
		}
		ends[2]()
		spareDirs(t, dir, 3)
	})

	t.Run("spares start again only after a quiet time; a burst within it starts the wait anew", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		s.quiet = 400 * time.Millisecond
		clone := func(name string) func() {
			start, end := s.begin(ck)
			work := filepath.Join(t.TempDir(), name)
			if err := os.MkdirAll(work, 0o700); err != nil {
				t.Fatal(err)
			}
			lp, _, err := start(ctx, work)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(lp.Stop)
			return end
		}
		clone("a")()
		time.Sleep(250 * time.Millisecond)
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%d spares started within the quiet time", len(ents))
		}
		end := clone("b") // a new burst before the first one's quiet time is over
		time.Sleep(250 * time.Millisecond)
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%d spares started while a clone was starting", len(ents))
		}
		end()
		began := time.Now()
		time.Sleep(250 * time.Millisecond)
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("%d spares started within the second burst's quiet time", len(ents))
		}
		spareDirs(t, dir, 1)
		if since := time.Since(began); since < s.quiet {
			t.Fatalf("a spare was ready %s after the burst, within the quiet time %s", since, s.quiet)
		}
	})

	t.Run("spares of the snapshot cloned longest ago make room for another's", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		old := &checkpoint.Checkpoint{ID: checkpoint.NewID(time.Now().Add(-time.Hour)), Dir: t.TempDir()}
		s.prepare(old)
		spareDirs(t, dir, templateSpares)
		s.prepare(ck)
		perSnapshot := map[string]int{}
		for name := range spareDirs(t, dir, maxSpareDaemons) {
			perSnapshot[name[:strings.LastIndexByte(name, '-')]]++
		}
		if perSnapshot[ck.ID] != templateSpares || perSnapshot[old.ID] != maxSpareDaemons-templateSpares {
			t.Fatalf("spares per snapshot: %v, want %d of %s (the new one) and %d of the other", perSnapshot, templateSpares, ck.ID, maxSpareDaemons-templateSpares)
		}
	})

	t.Run("removing the snapshot stops its spares", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		s.prepare(ck)
		pids := spareDirs(t, dir, templateSpares)
		s.drop(ck.ID)
		for _, pid := range pids {
			waitGone(t, pid)
		}
		spareDirs(t, dir, 0)
		start, end := s.begin(ck)
		defer end()
		work := t.TempDir()
		lp, _, err := start(ctx, work)
		if err != nil {
			t.Fatal(err)
		}
		defer lp.Stop()
		for _, pid := range pids {
			if lp.Pid() == pid {
				t.Fatal("a dropped spare was used")
			}
		}
	})

	t.Run("a new agent stops the spares an ended one left", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		ctx1, cancel1 := context.WithCancel(context.Background())
		var wg1 sync.WaitGroup
		old := newLazySpares(ctx1, dir, criu.Exec{Path: bin}, nil, slog.Default(), &wg1)
		old.prepare(ck)
		pids := spareDirs(t, dir, templateSpares)
		cancel1()
		wg1.Wait() // the agent "crashed": its spares were not closed
		newTestSpares(t, dir, bin)
		for _, pid := range pids {
			waitGone(t, pid)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("the old spares' directory is still there: %v", err)
		}
	})

	t.Run("a new agent stops a spare an ended one left before it listened", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		never := fakeCRIU(t, "cd \"$5\" || exit 1\nexec sleep 300\n") // starts, never listens
		ctx1, cancel1 := context.WithCancel(context.Background())
		var wg1 sync.WaitGroup
		old := newLazySpares(ctx1, dir, criu.Exec{Path: never}, nil, slog.Default(), &wg1)
		defer func() { cancel1(); wg1.Wait(); old.close() }()
		old.prepare(ck)
		var pid int
		deadline := time.Now().Add(10 * time.Second)
		for pid == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no spare was launched")
			}
			time.Sleep(20 * time.Millisecond)
			ents, _ := os.ReadDir(dir)
			for _, de := range ents {
				work := filepath.Join(dir, de.Name())
				b, err := os.ReadFile(filepath.Join(work, spareStartingPidFile))
				p, perr := strconv.Atoi(string(b))
				if cwd, cerr := os.Readlink("/proc/" + string(b) + "/cwd"); err == nil && perr == nil && cerr == nil && cwd == work {
					pid = p
				}
			}
		}
		newTestSpares(t, dir, bin) // the old agent "crashed" while its spare started
		waitGone(t, pid)
	})

	t.Run("a template's creation can wait for its first spare", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s.awaitSpare(wctx, "nosuch") // no spare: at once
		s.prepare(ck)
		s.awaitSpare(wctx, ck.ID)
		if wctx.Err() != nil {
			t.Fatal("awaitSpare waited out its context")
		}
		s.mu.Lock()
		first := s.ready[ck.ID][0]
		s.mu.Unlock()
		select {
		case <-first.done:
		default:
			t.Fatal("awaitSpare returned before the first spare was ready")
		}
		if first.err != nil || first.lp == nil {
			t.Fatalf("the first spare: %v", first.err)
		}
	})

	t.Run("close stops every spare", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, cancel, wg := newTestSpares(t, dir, bin)
		s.prepare(ck)
		pids := spareDirs(t, dir, templateSpares)
		s.mu.Lock()
		ready := slices.Clone(s.ready[ck.ID])
		s.mu.Unlock()
		for _, sp := range ready {
			<-sp.done
			if sp.shim == nil {
				t.Error("a spare has no parked shim")
			} else {
				pids["shim of "+sp.work] = sp.shim.Pid()
				if n := niceOf(t, sp.shim.Pid()); n != backgroundNice {
					t.Errorf("a spare's parked shim starts at nice %d, want %d", n, backgroundNice)
				}
			}
		}
		cancel()
		wg.Wait()
		s.close()
		for _, pid := range pids { // daemons and parked shims
			waitGone(t, pid)
		}
		s.prepare(ck) // after close: nothing is started
		time.Sleep(100 * time.Millisecond)
		spareDirs(t, dir, 0)
	})
}
