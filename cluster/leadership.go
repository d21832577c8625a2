package cluster

import (
	"context"
	"sync"
	"time"
)

// leadership runs the functions registered with OnLeadership while this
// node leads. Each term of leadership gets its own context, cancelled when
// leadership ends or the Store shuts down. A term's functions start only
// after a raft barrier (so the FSM holds every entry of earlier terms) and
// after the previous term's functions returned, so two runs of a loop never
// overlap on one node.
type leadership struct {
	s        *Store
	mu       sync.Mutex
	fns      []func(context.Context)
	term     *leaderTerm // current term, nil while not leader
	prevTerm *leaderTerm
	all      sync.WaitGroup
	closed   bool
}

type leaderTerm struct {
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed after the barrier and the previous term ended
	wg     sync.WaitGroup
}

func (l *leadership) init(s *Store) { l.s = s }

// OnLeadership registers fn to run, in its own goroutine, each time this
// node becomes leader, with a context cancelled when it stops being leader.
// If this node leads now, fn starts at once. fn should return soon after
// ctx is done; Shutdown waits for it.
func (s *Store) OnLeadership(fn func(ctx context.Context)) {
	l := &s.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fns = append(l.fns, fn)
	if l.term != nil {
		l.start(l.term, fn)
	}
}

func (s *Store) watchLeadership() {
	for {
		select {
		case isLeader := <-s.notifyCh:
			if isLeader {
				s.lead.begin()
			} else {
				s.lead.end()
			}
		case <-s.shutdownCh:
			return
		}
	}
}

// begin starts a term; l.mu must not be held.
func (l *leadership) begin() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != nil || l.closed {
		return
	}
	l.s.log.Info("became leader; starting leader loops", "loops", len(l.fns))
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{ctx: ctx, cancel: cancel, ready: make(chan struct{})}
	prev := l.prevTerm
	l.prevTerm = t
	l.term = t
	l.all.Add(1)
	go func() {
		defer l.all.Done()
		if prev != nil {
			prev.wg.Wait()
		}
		if l.barrier(ctx) {
			close(t.ready)
		}
	}()
	for _, fn := range l.fns {
		l.start(t, fn)
	}
}

func (l *leadership) barrier(ctx context.Context) bool {
	for ctx.Err() == nil {
		err := waitFuture(ctx, l.s.raft.Barrier(l.s.cfg.ApplyTimeout))
		if err == nil {
			return true
		}
		if err == ctx.Err() {
			return false
		}
		l.s.log.Warn("leader barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// start runs fn in term t; l.mu is held.
func (l *leadership) start(t *leaderTerm, fn func(context.Context)) {
	t.wg.Add(1)
	l.all.Add(1)
	go func() {
		defer l.all.Done()
		defer t.wg.Done()
		select {
		case <-t.ready:
			fn(t.ctx)
		case <-t.ctx.Done():
		}
	}()
}

func (l *leadership) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil {
		return
	}
	l.s.log.Info("lost leadership; stopping leader loops")
	l.term.cancel()
	l.term = nil
}

func (l *leadership) stop() {
	l.end()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

func (l *leadership) wait() { l.all.Wait() }
