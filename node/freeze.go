package node

import (
	"context"
	"fmt"
)

// Freeze stops a running container's processes where they are (the cgroup freezer, as `runc pause`): its
// memory and files stay, nothing of it runs. why becomes the container's note. Thaw lets it go on.
func (a *Agent) Freeze(ctx context.Context, name, why string) error {
	e, unlock, err := a.lockIn(name, "only a running container can be frozen", StateRunning)
	if err != nil {
		return err
	}
	defer unlock()
	if err := a.runc.Pause(ctx, name); err != nil {
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
	if err := a.runc.Resume(ctx, name); err != nil {
		return fmt.Errorf("thawing %s: %w", name, err)
	}
	_ = e.update(func(c *Container) { c.Note = "" })
	a.log.Info("container thawed", "container", name)
	return nil
}
