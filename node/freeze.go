package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/node/runtime"
)

// Freeze stops a running container's processes where they are (the cgroup freezer, as `runc pause`): its
// memory and files stay, nothing of it runs. why becomes the container's note. Thaw lets it go on.
func (a *Agent) Freeze(ctx context.Context, name, why string) error {
	e, unlock, err := a.lockIn(name, "only a running container can be frozen", StateRunning)
	if err != nil {
		return err
	}
	defer unlock()
	if err := a.pause(ctx, name); err != nil {
		return fmt.Errorf("freezing %s: %w", name, err)
	}
	_ = e.update(func(c *Container) { c.Note = why })
	a.log.Warn("container frozen", "container", name, "why", why)
	return nil
}

// Thaw lets a container that Freeze stopped go on.
func (a *Agent) Thaw(ctx context.Context, name string) error {
	e, err := a.lookup(name)
	if err != nil {
		return err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if st, err := a.runc.State(ctx, name); err != nil || st.Status != "paused" {
		return fmt.Errorf("%w: container %s is not frozen (%v)", ErrState, name, err)
	}
	if err := a.resume(ctx, name); err != nil {
		return fmt.Errorf("thawing %s: %w", name, err)
	}
	_ = e.update(func(c *Container) { c.Note = "" })
	a.log.Info("container thawed", "container", name)
	return nil
}

// pause freezes the container's processes through its cgroup's freezer (runc pause where this node's cgroups
// have no freezer it can drive); runc sees it paused.
func (a *Agent) pause(ctx context.Context, name string) error {
	err := runtime.FreezeCgroup(ctx, a.cgroupsPath(name))
	if errors.Is(err, runtime.ErrNoFreezer) {
		return a.runc.Pause(ctx, name)
	}
	return err
}

// resume thaws what pause (or runc pause) froze.
func (a *Agent) resume(ctx context.Context, name string) error {
	err := runtime.ThawCgroup(a.cgroupsPath(name))
	if errors.Is(err, runtime.ErrNoFreezer) {
		return a.runc.Resume(ctx, name)
	}
	return err
}
