package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LazyPages is CRIU's lazy-pages daemon serving a restore from local images: the restored process starts
// before its memory is in place, page faults are served from the images through userfaultfd, and the rest is
// copied in the background; the daemon exits when every page is in. (go-criu has no request for it, so it is
// run as `criu lazy-pages`.)
type LazyPages struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

// socketName is where the daemon listens for the restoring CRIU, in the shared work directory.
const lazySocket = "lazy-pages.socket"

// StartLazyPages starts the daemon for imagesDir with workDir as the work directory that the restore (runc
// restore --lazy-pages --work-path workDir) must use too, and waits until it listens.
func StartLazyPages(ctx context.Context, binary, imagesDir, workDir string) (*LazyPages, error) {
	return startLazyPages(ctx, binary, imagesDir, workDir, false)
}

// StartLazyPagesIdle is StartLazyPages for a daemon started ahead of need: it runs in the idle scheduling
// class (SCHED_IDLE: only CPU time that nothing else wants) from its start, so that starting it (CRIU's
// start-up, mostly) does not slow down what runs now; SetNice brings it back to the normal class once it
// serves a restore.
func StartLazyPagesIdle(ctx context.Context, binary, imagesDir, workDir string) (*LazyPages, error) {
	return startLazyPages(ctx, binary, imagesDir, workDir, true)
}

func startLazyPages(ctx context.Context, binary, imagesDir, workDir string, idle bool) (*LazyPages, error) {
	if binary == "" {
		binary = "criu"
	}
	_ = os.Remove(filepath.Join(workDir, lazySocket))
	lp := &LazyPages{done: make(chan error, 1), log: filepath.Join(workDir, "lazy-pages.log")}
	lp.cmd = exec.Command(binary, "lazy-pages", "--images-dir", imagesDir, "--work-dir", workDir, "--log-file", "lazy-pages.log", "-v4")
	if err := lp.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting criu lazy-pages: %w", err)
	}
	if idle {
		// Inherited by what it forks and kept across exec (the launcher's mount, CRIU itself).
		_ = unix.SchedSetAttr(lp.cmd.Process.Pid, &unix.SchedAttr{Policy: unix.SCHED_IDLE}, 0)
	}
	go func() { lp.done <- lp.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(workDir, lazySocket)); err == nil {
			return lp, nil
		}
		select {
		case err := <-lp.done:
			return nil, fmt.Errorf("criu lazy-pages exited at start (%v); see %s", err, lp.log)
		case <-ctx.Done():
			lp.Stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			lp.Stop()
			return nil, errors.New("criu lazy-pages did not listen within 10s; see " + lp.log)
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

// SetNice puts the daemon in the normal scheduling class (out of the idle one) with the given nice value
// (its CPU priority: 0 is normal, 19 the lowest).
func (lp *LazyPages) SetNice(nice int) error {
	return unix.SchedSetAttr(lp.cmd.Process.Pid, &unix.SchedAttr{Policy: unix.SCHED_NORMAL, Nice: int32(nice)}, 0)
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
func (lp *LazyPages) Moved(workDir string) { lp.log = filepath.Join(workDir, "lazy-pages.log") }

// Stop kills the daemon (after a failed restore it would wait forever).
func (lp *LazyPages) Stop() {
	if lp != nil && lp.cmd.Process != nil {
		_ = lp.cmd.Process.Kill()
	}
}
