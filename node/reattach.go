package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferryhq/ferry/node/runtime"
)

// reattach loads the containers recorded on disk and squares each record with what runc and the shims say:
// running containers are watched again, containers that ended while the agent was away are recorded as
// exited, and operations an agent restart interrupted are wound back. What it found is logged and kept in
// each container's Note, which `ferry ps` shows.
func (a *Agent) reattach(ctx context.Context) {
	a.removeAllPending()
	found, errs := loadContainers(filepath.Join(a.cfg.DataDir, "containers"))
	for _, err := range errs {
		a.log.Warn("skipping an unreadable container record", "err", err)
	}
	var running, ended int
	for name, e := range found {
		a.containers[name] = e
		a.removePending(name)
		switch e.c.State {
		case StateRunning, StateCheckpointing, StateRestoring, StateCreated, StateMigrating:
		default:
			continue
		}
		if a.reattachOne(ctx, e) {
			running++
		} else {
			ended++
		}
	}
	if len(found) > 0 {
		a.log.Info("containers found on disk", "total", len(found), "running", running, "ended_while_away", ended)
	}
}

func (a *Agent) reattachOne(ctx context.Context, e *entry) bool {
	c := e.snapshot()
	name := c.Config.Name
	st, err := a.runc.State(ctx, name)
	alive := err == nil && (st.Status == "running" || st.Status == "paused")
	if !alive {
		switch c.State {
		case StateCheckpointing:
			a.release(ctx, e)
			_ = e.update(func(c *Container) {
				c.State, c.Pid, c.ShimPid = StateExited, 0, 0
				c.Note = "a checkpoint was interrupted by an agent restart and the container is gone; restore it from its last finished checkpoint"
			})
		case StateRestoring:
			a.release(ctx, e)
			_ = e.update(func(c *Container) {
				c.State, c.Pid, c.ShimPid = StateCheckpointed, 0, 0
				c.Note = "a restore was interrupted by an agent restart; the checkpoint is intact, run ferry restore again"
			})
		default:
			a.finishExited(ctx, e)
			_ = e.update(func(c *Container) { c.Note = "ended while the agent was not running" })
		}
		a.log.Warn("container is no longer running", "container", name, "was", c.State)
		return false
	}
	if c.State == StateMigrating && st.Status == "paused" {
		// Frozen for a migration: only the migration's owner (the leader) may say whether it moved (then
		// this copy is removed) or not (then it is thawed). Thawing it here could run it in two places.
		_ = e.update(func(c *Container) {
			c.Pid, c.Note = st.Pid, "frozen by a migration that an agent restart interrupted; the cluster's leader finishes or rolls it back"
		})
		a.watch(e, c.ShimPid)
		a.log.Warn("container frozen by an interrupted migration; waiting for the leader", "container", name)
		return true
	}
	if st.Status == "paused" {
		_ = a.resume(ctx, name) // a checkpoint paused it and the agent died before resuming it
	}
	note := ""
	if c.State != StateRunning {
		note = "an operation (" + c.State + ") was interrupted by an agent restart; the container kept running"
	}
	shimOK := runtime.Alive(c.ShimPid) && isShim(c.ShimPid)
	if !shimOK {
		note = strings.TrimSpace(note + " its log shim is gone, so its output since then is lost")
	}
	_ = e.update(func(c *Container) { c.State, c.Pid, c.Note = StateRunning, st.Pid, note })
	if shimOK {
		a.watch(e, c.ShimPid)
	} else {
		_ = e.update(func(c *Container) { c.ShimPid = st.Pid })
		a.watch(e, st.Pid)
	}
	a.adoptLazy(e)
	a.log.Info("re-attached to a running container", "container", name, "pid", st.Pid, "shim", shimOK)
	return true
}

// isShim checks that pid is a ferry shim (and not an unrelated process that reused the pid).
func isShim(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return len(args) >= 2 && args[1] == "shim"
}

// removeAllPending removes what interrupted checkpoints and incoming migrations left, for every container
// (also those that never arrived), and stops page servers they left waiting.
func (a *Agent) removeAllPending() {
	matches, _ := filepath.Glob(filepath.Join(a.cfg.DataDir, "checkpoints", "*", ".pending-*"))
	for _, m := range matches {
		stopPageServerOf(m)
		_ = os.RemoveAll(m)
		a.log.Info("removed an unfinished checkpoint or incoming migration", "dir", m)
	}
	_ = os.RemoveAll(filepath.Join(a.cfg.DataDir, "migrations"))
	a.reapEarlyLazy()
}

// removePending removes checkpoint directories that an interrupted checkpoint left unfinished.
func (a *Agent) removePending(name string) {
	matches, _ := filepath.Glob(filepath.Join(a.checkpointsDir(name), ".pending-*"))
	for _, m := range matches {
		_ = os.RemoveAll(m)
		a.log.Info("removed an unfinished checkpoint", "container", name, "dir", filepath.Base(m))
	}
}
