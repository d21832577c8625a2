package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// A migrated container is restored lazily from its local images (see lazyOK): its lazy-pages daemon must
// listen before CRIU's restore starts. Starting a CRIU process takes 60-130 ms here (a shell, the dynamic
// loader, CRIU's set-up), so the daemon of an incoming migration is started when the migration is prepared,
// while the source still runs, and not on the downtime's path. It cannot read its checkpoint then (the dump
// has not ended), so it starts ahead of it (criu.LaunchLazyPagesAhead: it waits in its first read) and is fed
// the checkpoint when the restore begins. It works in a directory of its own, which the restore takes over by
// renaming (the daemon works in the directory it has open, so it goes on listening there), and it holds its
// images directory open, so the checkpoint's publication (a rename) does not disturb it.

// incomingDir holds the work directories of the lazy-pages daemons started ahead for incoming migrations.
func (a *Agent) incomingDir() string { return filepath.Join(a.cfg.DataDir, "incoming") }

// earlyLazyPidFile, in such a work directory, names its daemon (so that a new agent can stop one a crashed
// agent left).
const earlyLazyPidFile = "lazy-pages.pid"

// earlyLazy is the lazy-pages daemon started ahead for one incoming migration.
type earlyLazy struct {
	work string
	done chan struct{} // closed once lp or err is set
	lp   *criu.LazyPages
	err  error
}

// startEarlyLazy starts, in the background, the lazy-pages daemon that will serve the restore of incoming
// migration id.
func (a *Agent) startEarlyLazy(id string) *earlyLazy {
	el := &earlyLazy{work: filepath.Join(a.incomingDir(), id), done: make(chan struct{})}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(el.done)
		if el.err = os.MkdirAll(el.work, 0o700); el.err != nil {
			return
		}
		el.lp, el.err = criu.LaunchLazyPagesAhead(a.criuExec, el.work, 0)
		if el.err == nil {
			_ = os.WriteFile(filepath.Join(el.work, earlyLazyPidFile), []byte(strconv.Itoa(el.lp.Pid())), 0o600)
		}
	}()
	return el
}

// stop stops the daemon (if it started) and removes its directory. Safe on nil.
func (el *earlyLazy) stop() {
	if el == nil {
		return
	}
	<-el.done
	if el.lp != nil {
		el.lp.Stop()
		_ = el.lp.Wait(context.Background())
	}
	_ = os.RemoveAll(el.work)
}

// starter returns the lazyStart of the restore: it hands the daemon over to the restore's work directory, or,
// if the daemon failed or ended, starts a fresh one for ck (as a restore without an early daemon would).
func (el *earlyLazy) starter(a *Agent, ck *checkpoint.Checkpoint) lazyStart {
	fresh := a.freshLazy(ck)
	if el == nil || fresh == nil {
		el.stop()
		return fresh
	}
	return func(ctx context.Context, work string) (*criu.LazyPages, *runtime.ParkedShim, error) {
		select {
		case <-el.done:
		case <-ctx.Done():
			go el.stop()
			return nil, nil, ctx.Err()
		}
		if el.err == nil {
			el.err = el.lp.Feed(ctx, ck.ImagesDir())
		}
		if el.err == nil && !el.lp.Exited() {
			if err := os.RemoveAll(work); err == nil {
				if err := os.Rename(el.work, work); err == nil {
					_ = os.Remove(filepath.Join(work, earlyLazyPidFile))
					el.lp.Moved(work)
					return el.lp, nil, nil
				}
			}
		}
		if el.err != nil {
			a.log.Warn("the lazy-pages daemon started ahead of a migration's restore failed; starting another", "err", el.err)
		}
		el.stop()
		if err := os.MkdirAll(work, 0o700); err != nil {
			return nil, nil, err
		}
		return fresh(ctx, work)
	}
}

// reapEarlyLazy stops the daemons that an agent which ended without cleaning up left for incoming
// migrations, and removes their directories. A pid is killed only if that process still works in the
// directory (so a reused pid is left alone).
func (a *Agent) reapEarlyLazy() {
	dir := a.incomingDir()
	ents, _ := os.ReadDir(dir)
	for _, de := range ents {
		if pid, ok := stopDaemonIn(filepath.Join(dir, de.Name()), earlyLazyPidFile); ok {
			a.log.Info("stopped a lazy-pages daemon left by an earlier agent for an incoming migration", "pid", pid)
		}
	}
	_ = os.RemoveAll(dir)
}

// stopDaemonIn kills the process named by the pid file in directory work if that process still works in work
// (its current directory), so that a pid reused by another process is left alone.
func stopDaemonIn(work, pidFile string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(work, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != work {
		return 0, false
	}
	return pid, syscall.Kill(pid, syscall.SIGKILL) == nil
}
