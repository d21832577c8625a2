package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// silence tracks, on the leader, the raft peers its heartbeats fail to reach
// and since when: raft reports a failed heartbeat with the peer's last
// contact, and a resumed one when it answers again. It is what "raft has not
// heard from a node" means for a failover; see Store.RaftSilence.
type silence struct {
	mu    sync.Mutex
	since map[string]time.Time // peer name -> last contact before its heartbeats began to fail
}

func (t *silence) observe(o raft.Observation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		if t.since == nil {
			t.since = map[string]time.Time{}
		}
		if _, ok := t.since[string(d.PeerID)]; !ok {
			t.since[string(d.PeerID)] = d.LastContact
		}
	case raft.ResumedHeartbeatObservation:
		delete(t.since, string(d.PeerID))
	case raft.LeaderObservation:
		t.since = nil // a new term: replication to every peer starts afresh
	}
}

func (t *silence) get(name string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.since[name]
	return at, ok
}

// watchSilence registers the observer that feeds s.silent; it runs until the
// Store shuts down.
func (s *Store) watchSilence() {
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(obs)
	go func() {
		defer s.raft.DeregisterObserver(obs)
		for {
			select {
			case o := <-ch:
				s.silent.observe(o)
			case <-s.shutdownCh:
				return
			}
		}
	}()
}

// RaftSilence returns, on the leader, since when raft has not heard from the
// named peer (the last contact before its heartbeats began to fail) and true;
// false while heartbeats reach it, when it is not a raft server, or when this
// node does not lead (a new leader learns it with its first failed heartbeat).
func (s *Store) RaftSilence(name string) (time.Time, bool) {
	if !s.IsLeader() {
		return time.Time{}, false
	}
	return s.silent.get(name)
}

// WaitCaughtUp waits, up to ctx, until this node has heard from a leader
// recently and applied every entry it knows to be committed, and that stayed
// so for a few heartbeats: a restarted node then knows what the cluster did
// while it was away. It returns ctx's error if that does not happen.
func (s *Store) WaitCaughtUp(ctx context.Context) error {
	hb := s.cfg.HeartbeatTimeout
	stable := 0
	var last uint64
	for {
		idx := s.AppliedIndex()
		fresh := s.IsLeader() || time.Since(s.raft.LastContact()) < 2*hb
		if fresh && idx >= s.raft.CommitIndex() && idx == last {
			stable++
		} else {
			stable = 0
		}
		if stable >= 3 {
			return nil
		}
		last = idx
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.shutdownCh:
			return ErrShutdown
		case <-time.After(hb / 2):
		}
	}
}

// OutOfTouch is how long this node has not heard from a leader: zero on the
// leader, and since the store opened when it never has.
func (s *Store) OutOfTouch() time.Duration {
	if s.IsLeader() {
		return 0
	}
	last := s.raft.LastContact()
	if last.IsZero() || last.Before(s.opened) {
		last = s.opened
	}
	return time.Since(last)
}
