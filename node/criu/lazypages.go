package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// LazyPages is CRIU's lazy-pages daemon serving a restore from local images: the restored process starts
// before its memory is in place, page faults are served from the images through userfaultfd, and the rest is
// copied in the background; the daemon exits when every page is in. (go-criu has no request for it, so it is
// run as `criu lazy-pages`.)
type LazyPages struct {
	cmd    *exec.Cmd
	done   chan error
	log    string
	socket string
	ahead  string // the images directory of a daemon started ahead of its checkpoint (LaunchLazyPagesAhead)
}

// socketName is where the daemon listens for the restoring CRIU, in the shared work directory.
const lazySocket = "lazy-pages.socket"

// StartLazyPages starts the daemon for imagesDir with workDir as the work directory that the restore (runc
// restore --lazy-pages --work-path workDir) must use too, and waits until it listens.
func StartLazyPages(ctx context.Context, x Exec, imagesDir, workDir string) (*LazyPages, error) {
	lp, err := LaunchLazyPages(x, imagesDir, workDir, 0)
	if err != nil {
		return nil, err
	}
	if err := lp.Listening(ctx); err != nil {
		return nil, err
	}
	return lp, nil
}

// LaunchLazyPages starts the daemon like StartLazyPages, at the given nice value from its start (for a daemon
// started ahead of need, whose start-up should not slow down what runs now; SetNice changes it later), and
// returns at once: Listening waits until it listens.
func LaunchLazyPages(x Exec, imagesDir, workDir string, nice int) (*LazyPages, error) {
	_ = os.Remove(filepath.Join(workDir, lazySocket))
	lp := &LazyPages{done: make(chan error, 1), log: filepath.Join(workDir, "lazy-pages.log"), socket: filepath.Join(workDir, lazySocket)}
	lp.cmd = exec.Command(x.path(), "lazy-pages", "--images-dir", imagesDir, "--work-dir", workDir, "--log-file", "lazy-pages.log", "-v4")
	// A session of its own, so that its nice value counts against everything else (SetNice).
	lp.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := x.Start(lp.cmd); err != nil {
		return nil, fmt.Errorf("starting criu lazy-pages: %w", err)
	}
	if nice != 0 {
		// Inherited by what it forks (the launcher's mount) and kept across exec (CRIU itself).
		_ = lp.SetNice(nice)
	}
	go func() { lp.done <- lp.cmd.Wait() }()
	return lp, nil
}

// Listening waits until the daemon LaunchLazyPages started listens; on failure (or when ctx ends) the daemon
// is stopped.
func (lp *LazyPages) Listening(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(lp.socket); err == nil {
			return nil
		}
		select {
		case err := <-lp.done:
			lp.done <- err
			return fmt.Errorf("criu lazy-pages exited at start (%v); see %s", err, lp.log)
		case <-ctx.Done():
			lp.Stop()
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			lp.Stop()
			return errors.New("criu lazy-pages did not listen within 10s; see " + lp.log)
		}
	}
}

// Wait waits until every page was served and the daemon exited.
func (lp *LazyPages) Wait(ctx context.Context) error {
	select {
	case err := <-lp.done:
		lp.done <- err
		if err != nil {
			return fmt.Errorf("criu lazy-pages: %w; see %s", err, lp.log)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pid is the daemon's process id.
func (lp *LazyPages) Pid() int { return lp.cmd.Process.Pid }

// SetNice sets the daemon's nice value (its CPU priority: 0 is normal, 19 the lowest), and its session's.
// With the kernel's automatic grouping (autogroups, on by default) the CPU is shared between sessions first
// and a thread's nice value orders it only within its session: the daemon runs in a session of its own, whose
// nice value is what counts against the containers and the agent.
func (lp *LazyPages) SetNice(nice int) error {
	if lp.Exited() {
		return nil // reaped: its pid may be another process's now
	}
	SetSessionNice(lp.cmd.Process.Pid, nice)
	return syscall.Setpriority(syscall.PRIO_PROCESS, lp.cmd.Process.Pid, nice)
}

// SetSessionNice sets the nice value of the autogroup of pid's session; where the kernel has no autogroups
// there is nothing to set.
func SetSessionNice(pid, nice int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/autogroup", []byte(strconv.Itoa(nice)), 0)
}

// Exited reports whether the daemon has ended (a daemon that ended before a restore connected cannot serve it).
func (lp *LazyPages) Exited() bool {
	select {
	case err := <-lp.done:
		lp.done <- err
		return true
	default:
		return false
	}
}

// Moved tells lp that its work directory was renamed to workDir (on the same filesystem). The daemon works
// in the directory it has open (CRIU changes into its work directory at start), so it goes on listening on
// the socket there; a restore given workDir connects to it.
func (lp *LazyPages) Moved(workDir string) {
	lp.log, lp.socket = filepath.Join(workDir, "lazy-pages.log"), filepath.Join(workDir, lazySocket)
	if lp.ahead != "" {
		lp.ahead = filepath.Join(workDir, filepath.Base(lp.ahead))
	}
}

// Stop kills the daemon (after a failed restore it would wait forever).
func (lp *LazyPages) Stop() {
	if lp != nil && lp.cmd.Process != nil {
		_ = lp.cmd.Process.Kill()
	}
}
