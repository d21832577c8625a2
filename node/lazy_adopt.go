package node

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// LazyDaemon is the CRIU lazy-pages daemon still copying a lazily restored container's memory in. It is
// kept in the container's record until the daemon has copied every page, so that an agent restarted
// meanwhile (the daemon runs on without it) can watch it to its end: the agent that started it reads its
// exit status; a later one, which cannot, reads its log (criu.LazyLogFileComplete).
type LazyDaemon struct {
	Pid int `json:"pid"`
	// Start is the process's start time (clock ticks since boot), which tells it from a later process
	// that got its pid.
	Start uint64 `json:"start"`
	Log   string `json:"log"`
}

// procStartTime returns the start time of process pid (the 22nd field of /proc/PID/stat), and whether it
// runs (a zombie does not).
func procStartTime(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // from the 3rd field: state
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// lazyDaemonOf is the record of lp, the daemon that copies the rest of a container's memory in after its
// lazy restore.
func lazyDaemonOf(lp *criu.LazyPages) *LazyDaemon {
	ld := &LazyDaemon{Pid: lp.Pid(), Log: lp.Log()}
	ld.Start, _ = procStartTime(ld.Pid)
	return ld
}

// lazyDone records that the daemon of the restore that made restored copied every page in.
func (a *Agent) lazyDone(e *entry, restored Container) {
	_ = e.update(func(c *Container) {
		if c.Pid == restored.Pid && c.Generation == restored.Generation {
			c.Lazy = nil
		}
	})
}

// adoptLazy watches, for an agent that did not start it, the lazy-pages daemon of a running container
// restored by an earlier agent, until it ends: a daemon that ended before every page was in (its log says
// so) leaves memory that reads as zeros, and the container is stopped (lazyFailed).
func (a *Agent) adoptLazy(e *entry) {
	restored := e.snapshot()
	ld := restored.Lazy
	if ld == nil {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		// A process with the daemon's pid and start time is the daemon: wait for its end.
		if start, ok := procStartTime(ld.Pid); ok && start == ld.Start {
			if err := runtime.WaitPid(a.ctx, ld.Pid); err != nil {
				return // the agent is closing: the next one adopts it
			}
		}
		err := criu.LazyLogFileComplete(ld.Log)
		switch {
		case err == nil:
			a.log.Info("the lazy-pages daemon of a container restored before this agent started copied every page in", "container", restored.Config.Name)
			a.lazyDone(e, restored)
		case errors.Is(err, criu.ErrLazyIncomplete):
			a.log.Error("lazy restore did not complete while no agent watched it", "container", restored.Config.Name, "err", err)
			a.lazyFailed(e, restored, fmt.Errorf("%w (see %s)", err, ld.Log))
		default:
			// Its log cannot be read: how it ended is unknown. The container is left as it is, and says so.
			a.log.Error("the lazy-pages daemon of a container ended while no agent watched it, and its log cannot be read; the container may run on memory with missing pages",
				"container", restored.Config.Name, "err", err)
			_ = e.update(func(c *Container) {
				if c.Pid == restored.Pid && c.Generation == restored.Generation {
					c.Lazy = nil
					c.Note = strings.TrimSpace(c.Note + " its lazy restore ended while no agent watched it, and whether every page was copied in is unknown (" + err.Error() + "); restore it from a snapshot if in doubt")
				}
			})
		}
	}()
}
