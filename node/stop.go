package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node/runtime"
)

// Stop sends SIGTERM to the container, then SIGKILL after timeout (zero: the agent's StopTimeout), and waits
// until it has ended. Stopping a container that does not run just records it as stopped.
func (a *Agent) Stop(ctx context.Context, name string, timeout time.Duration) (Container, error) {
	e, err := a.lookup(name)
	if err != nil {
		return Container{}, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if timeout <= 0 {
		timeout = a.cfg.StopTimeout
	}
	c := e.snapshot()
	if c.State == StateRunning {
		if err := a.kill(ctx, e, timeout); err != nil {
			return Container{}, err
		}
	}
	a.release(context.WithoutCancel(ctx), e)
	code := -1
	if st, err := runtime.ReadExitStatus(e.exitPath()); err == nil {
		code = st.ExitCode
	}
	err = e.update(func(c *Container) {
		if c.State == StateRunning {
			c.ExitCode, c.FinishedAt = &code, time.Now()
		}
		c.State, c.Pid, c.ShimPid = StateStopped, 0, 0
	})
	a.log.Info("container stopped", "container", name)
	return e.snapshot(), err
}

// kill signals the container and waits for its shim (which outlives the container's init) to finish.
func (a *Agent) kill(ctx context.Context, e *entry, timeout time.Duration) error {
	c := e.snapshot()
	name := c.Config.Name
	if err := a.runc.Kill(ctx, name, syscall.SIGTERM, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		a.log.Warn("SIGTERM failed", "container", name, "err", err)
	}
	if waitFor(ctx, c.ShimPid, timeout) {
		return nil
	}
	a.log.Info("container did not stop after SIGTERM; sending SIGKILL", "container", name, "waited", timeout)
	_ = a.runc.Kill(ctx, name, syscall.SIGKILL, true)
	if !waitFor(ctx, c.ShimPid, 10*time.Second) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("container %s did not end after SIGKILL; look at its processes (pid %d)", name, c.Pid)
	}
	return nil
}

func waitFor(ctx context.Context, pid int, d time.Duration) bool {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return runtime.WaitPid(wctx, pid) == nil
}

// Remove deletes a container that is not running, with its log and checkpoints. With force a running
// container is killed first.
func (a *Agent) Remove(ctx context.Context, name string, force bool) error {
	e, err := a.lookup(name)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	c := e.snapshot()
	if c.State == StateRunning {
		if !force {
			return fmt.Errorf("%w: container %s is running; stop it first (ferry stop %s) or use --force", ErrState, name, name)
		}
		if err := a.kill(ctx, e, time.Second); err != nil {
			return err
		}
	}
	a.release(context.WithoutCancel(ctx), e)
	a.forget(e)
	if err := os.RemoveAll(a.checkpointsDir(name)); err != nil {
		return fmt.Errorf("removing the checkpoints of %s: %w", name, err)
	}
	a.log.Info("container removed", "container", name)
	return nil
}
