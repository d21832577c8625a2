package node

import (
	"context"
	"errors"
	"os"

	"github.com/ferryhq/ferry/node/runtime"
)

// Logs sends the container's log records to fn. With follow it goes on while the container runs, and also
// while it is checkpointed or being restored (a restored container writes on in the same log); it ends when
// the container has exited, was stopped or removed, or ctx ends.
func (a *Agent) Logs(ctx context.Context, name string, follow bool, fn func(runtime.LogRecord) error) error {
	e, err := a.lookup(name)
	if err != nil {
		return err
	}
	done := func() bool {
		if _, err := a.lookup(name); err != nil {
			return true
		}
		switch e.snapshot().State {
		case StateExited, StateStopped:
			return true
		}
		return false
	}
	err = runtime.FollowLog(ctx, e.logPath(), follow, done, fn)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing written yet
	}
	return err
}
