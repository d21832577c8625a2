package node

import (
	"context"
	"fmt"
	"io"
)

// Exec runs args inside a running container and returns the command's exit code.
func (a *Agent) Exec(ctx context.Context, name string, args, env []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		return -1, fmt.Errorf("%w: no command given; use ferry exec %s -- CMD ARGS...", ErrInvalid, name)
	}
	e, err := a.lookup(name)
	if err != nil {
		return -1, err
	}
	if c := e.snapshot(); c.State != StateRunning {
		return -1, fmt.Errorf("%w: container %s is %s, not running", ErrState, name, c.State)
	}
	return a.runc.Exec(ctx, name, args, env, stdout, stderr)
}
