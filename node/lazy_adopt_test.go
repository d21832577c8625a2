package node

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A restarted agent adopts the lazy-pages daemon of a container restored before it: it waits for the daemon's
// end and reads its log. (A sleep stands in for the daemon, another for the container.)
func TestAdoptLazy(t *testing.T) {
	const complete = "(00.1) uffd: Received PID: 1, uffd: 12\n(00.2) uffd: 1-12: UFFD transferred pages: (13/13)\n"
	const torn = "(00.1) uffd: Received PID: 1, uffd: 12\n(00.2) uffd: 1-12: uffd_copy: 0x7f00/4096\n"
	tests := []struct {
		name     string
		log      string // "" : no log
		alive    bool   // the daemon still runs when the agent adopts it
		wantKill bool   // the container is stopped
		wantNote string
	}{
		{"still copying, then done", complete, true, false, ""},
		{"still copying, then killed", torn, true, true, "lazy-pages daemon ended"},
		{"done before the agent came back", complete, false, false, ""},
		{"killed before the agent came back", torn, false, true, "lazy-pages daemon ended"},
		{"its log is gone", "", false, false, "is unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			container := exec.Command("sleep", "60")
			if err := container.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { _ = container.Wait(); close(exited) }()
			t.Cleanup(func() { _ = container.Process.Kill(); <-exited })
			daemon := exec.Command("sleep", "60")
			if err := daemon.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = daemon.Process.Kill(); _ = daemon.Wait() })
			ld := &LazyDaemon{Pid: daemon.Process.Pid, Log: filepath.Join(dir, "lazy-pages.log")}
			ld.Start, _ = procStartTime(ld.Pid)
			if tt.log != "" {
				if err := os.WriteFile(ld.Log, []byte(tt.log), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.alive {
				_ = daemon.Process.Kill()
				_ = daemon.Wait()
			}
			e := &entry{dir: dir, c: Container{Config: ContainerConfig{Name: "np"}, State: StateRunning, Pid: container.Process.Pid, Generation: 2, Lazy: ld}}
			ctx, cancel := context.WithCancel(context.Background())
			a := &Agent{cfg: Config{Name: "vg-1", DataDir: dir}, log: slog.Default(), ctx: ctx}
			a.adoptLazy(e)
			if tt.alive {
				time.Sleep(300 * time.Millisecond)
				if e.snapshot().Lazy == nil {
					t.Fatal("the adopted daemon was taken for ended while it ran")
				}
				_ = daemon.Process.Kill()
				_ = daemon.Wait()
			}
			deadline := time.Now().Add(5 * time.Second)
			for e.snapshot().Lazy != nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			a.wg.Wait()
			c := e.snapshot()
			if c.Lazy != nil {
				t.Fatalf("the record still names the daemon after its end: %+v", c.Lazy)
			}
			if !strings.Contains(c.Note, tt.wantNote) || (tt.wantNote == "") != (c.Note == "") {
				t.Fatalf("note %q, want one with %q", c.Note, tt.wantNote)
			}
			killed := false
			select {
			case <-exited:
				killed = true
			case <-time.After(time.Second):
			}
			if killed != tt.wantKill {
				t.Fatalf("container killed = %v, want %v", killed, tt.wantKill)
			}
		})
	}
	// An agent that closes while it waits leaves the daemon and the record alone, for the next one.
	daemon := exec.Command("sleep", "60")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = daemon.Process.Kill(); _ = daemon.Wait() }()
	ld := &LazyDaemon{Pid: daemon.Process.Pid, Log: filepath.Join(t.TempDir(), "lazy-pages.log")}
	ld.Start, _ = procStartTime(ld.Pid)
	e := &entry{dir: t.TempDir(), c: Container{Config: ContainerConfig{Name: "np"}, State: StateRunning, Pid: 1 << 22, Lazy: ld}}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: Config{Name: "vg-1"}, log: slog.Default(), ctx: ctx}
	a.adoptLazy(e)
	cancel()
	a.wg.Wait()
	if e.snapshot().Lazy == nil {
		t.Fatal("an agent closing while it waited dropped the daemon from the record")
	}
}
