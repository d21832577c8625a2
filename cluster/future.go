package cluster

import (
	"context"

	"github.com/hashicorp/raft"
)

// waitFuture waits for f's outcome or for ctx to end, whichever comes
// first; when ctx ended first it returns ctx.Err() itself. Raft never
// answers a future still queued when it shuts down (a barrier or an apply
// taken just before Shutdown), so nothing in the Store waits on one without
// a way out: such a wait kept Shutdown waiting for the leader loops for
// ever. The goroutine left on such a future is the only thing it costs.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
