package node

import (
	"context"
	"fmt"
	"sync"
)

// arrivals wakes whoever waits for a snapshot's copy (AwaitSnapshot) each time a copy is accepted.
type arrivals struct {
	mu sync.Mutex
	ch chan struct{}
}

// next returns a channel that is closed at the next accepted copy.
func (s *arrivals) next() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// signal wakes every waiter.
func (s *arrivals) signal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// AwaitSnapshot returns once this node holds snapshot id: at once if it does, else when a copy of it has
// been accepted here. It fails when ctx ends (the copy failed and its sender gave up) or after the node's
// IncomingTimeout. A clone sent to this node together with the snapshot's copy waits here, so that it starts
// the moment the copy is in.
func (a *Agent) AwaitSnapshot(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.IncomingTimeout)
	defer cancel()
	for {
		next := a.arrived.next()
		if a.HasSnapshot(id) {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return fmt.Errorf("%w: node %s has no copy of snapshot %s yet: %v", ErrNotFound, a.cfg.Name, id, ctx.Err())
		}
	}
}
