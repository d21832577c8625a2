package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Store is one node's replica of the cluster state: a raft server with the
// FSM, its on-disk stores and transport, write forwarding and leader loops.
// All methods are safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *FSM
	trans raft.Transport

	closers  []io.Closer // things Open created, closed after raft in Shutdown
	notifyCh chan bool
	lead     leadership
	silent   silence
	opened   time.Time

	shutdownCh   chan struct{}
	shutdownOnce sync.Once
	shutdownErr  error
}

// Open starts the raft server described by cfg. With cfg.Bootstrap and no
// existing state it bootstraps a new cluster; with existing state it resumes
// from it (its log, snapshots and configuration). Open returns without
// waiting for a leader; see WaitLeader.
func Open(ctx context.Context, cfg Config) (_ *Store, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.Name),
		fsm:        NewFSM(),
		notifyCh:   make(chan bool, 8),
		shutdownCh: make(chan struct{}),
		opened:     time.Now(),
	}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	logs, stable, snaps, err := s.openStores()
	if err != nil {
		return nil, err
	}
	if s.trans, err = s.openTransport(); err != nil {
		return nil, err
	}
	rc := cfg.raftConfig()
	rc.NotifyCh = s.notifyCh
	if s.raft, err = raft.NewRaft(rc, s.fsm, logs, stable, snaps, s.trans); err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if cfg.Bootstrap {
		if err := s.Bootstrap(cfg.Peers); err != nil {
			s.raft.Shutdown()
			return nil, err
		}
	}
	s.lead.init(s)
	s.watchSilence()
	go s.watchLeadership()
	s.log.Info("cluster store open", "raft_addr", s.trans.LocalAddr(), "bootstrap", cfg.Bootstrap)
	return s, nil
}

func (s *Store) openStores() (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	cfg := s.cfg
	logs, stable, snaps := cfg.LogStore, cfg.StableStore, cfg.SnapshotStore
	if logs == nil || stable == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, nil, nil, fmt.Errorf("create data dir: %w", err)
		}
		bs, err := OpenBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
		if err != nil {
			return nil, nil, nil, err
		}
		s.closers = append(s.closers, bs)
		if logs == nil {
			cached, err := raft.NewLogCache(512, bs)
			if err != nil {
				return nil, nil, nil, err
			}
			logs = cached
		}
		if stable == nil {
			stable = bs
		}
	}
	if snaps == nil {
		fs, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, hclogFor(cfg.Logger, "snapshot"))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open snapshot store in %s: %w", cfg.DataDir, err)
		}
		snaps = fs
	}
	return logs, stable, snaps, nil
}

func (s *Store) openTransport() (raft.Transport, error) {
	cfg := s.cfg
	if cfg.Transport != nil {
		return cfg.Transport, nil
	}
	var tr *raft.NetworkTransport
	var err error
	if cfg.StreamLayer != nil {
		tr = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: cfg.StreamLayer, MaxPool: 3, Timeout: 10 * time.Second,
			Logger: hclogFor(cfg.Logger, "raft-net"),
		})
	} else {
		var adv net.Addr
		if cfg.RaftAdvertise != "" {
			if adv, err = net.ResolveTCPAddr("tcp", cfg.RaftAdvertise); err != nil {
				return nil, fmt.Errorf("raft advertise address %q: %w", cfg.RaftAdvertise, err)
			}
		}
		tr, err = raft.NewTCPTransportWithLogger(cfg.RaftBind, adv, 3, 10*time.Second, hclogFor(cfg.Logger, "raft-net"))
		if err != nil {
			return nil, fmt.Errorf("listen for raft on %s (in use, or not an address of this host?): %w", cfg.RaftBind, err)
		}
	}
	s.closers = append([]io.Closer{tr}, s.closers...)
	return tr, nil
}

// Bootstrap makes a new cluster of peers (empty: this node alone). On a node
// that already has raft state it does nothing and returns nil.
func (s *Store) Bootstrap(peers []Peer) error {
	if len(peers) == 0 {
		peers = []Peer{{Name: s.cfg.Name, RaftAddr: string(s.trans.LocalAddr())}}
	}
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.RaftAddr),
		})
	}
	err := s.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		s.log.Info("raft state exists; not bootstrapping")
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap cluster: %w", err)
	}
	return nil
}

func (s *Store) closeAll() {
	for _, c := range s.closers {
		if err := c.Close(); err != nil {
			s.log.Warn("close", "err", err)
		}
	}
	s.closers = nil
}

// Shutdown stops leader loops and raft and closes what Open opened. It
// does not leave the cluster (see RemoveServer). Safe to call twice.
func (s *Store) Shutdown() error {
	s.shutdownOnce.Do(func() {
		close(s.shutdownCh)
		s.lead.stop()
		if s.raft != nil {
			s.shutdownErr = s.raft.Shutdown().Error()
		}
		s.lead.wait()
		s.closeAll()
		s.log.Info("cluster store shut down")
	})
	return s.shutdownErr
}

// Name is this node's name.
func (s *Store) Name() string { return s.cfg.Name }

// RaftAddr is the address of this node's raft transport.
func (s *Store) RaftAddr() string { return string(s.trans.LocalAddr()) }

// IsLeader reports whether this node is the raft leader now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's name and raft address as this node knows
// them, or empty strings when there is no leader. The leader's agent API
// address is State().Nodes[name].Addr once it registered.
func (s *Store) Leader() (name, raftAddr string) {
	addr, id := s.raft.LeaderWithID()
	return string(id), string(addr)
}

// RaftState is "Leader", "Follower", "Candidate" or "Shutdown".
func (s *Store) RaftState() string { return s.raft.State().String() }

// Stats returns raft's statistics.
func (s *Store) Stats() map[string]string { return s.raft.Stats() }

// State returns a deep copy of the replicated state as this node has applied
// it (a follower may lag the leader; see WaitIndex). The caller owns it.
func (s *Store) State() *State { return s.fsm.State() }

// View calls fn with the live state under a read lock; see FSM.View.
func (s *Store) View(fn func(*State)) { s.fsm.View(fn) }

// AppliedIndex is the raft index of the last command applied to the state.
func (s *Store) AppliedIndex() uint64 {
	var i uint64
	s.fsm.View(func(st *State) { i = st.Index })
	return i
}

// WaitLeader blocks until this node knows a leader and returns its name.
func (s *Store) WaitLeader(ctx context.Context) (string, error) {
	return poll(ctx, s.shutdownCh, 10*time.Millisecond, func() (string, bool) {
		name, _ := s.Leader()
		return name, name != ""
	})
}

// WaitIndex blocks until this node applied the command at index (e.g. a
// Result.Index), so a read after a forwarded write sees it.
func (s *Store) WaitIndex(ctx context.Context, index uint64) error {
	_, err := poll(ctx, s.shutdownCh, 5*time.Millisecond, func() (struct{}, bool) {
		return struct{}{}, s.AppliedIndex() >= index
	})
	return err
}

func poll[T any](ctx context.Context, stop <-chan struct{}, every time.Duration, f func() (T, bool)) (T, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if v, ok := f(); ok {
			return v, nil
		}
		select {
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		case <-stop:
			var zero T
			return zero, ErrShutdown
		case <-t.C:
		}
	}
}

// withTimeout gives ctx the Store's ApplyTimeout unless it has a deadline.
func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.ApplyTimeout)
}

// Apply writes op to the cluster: directly on the leader, through the
// Forwarder on a follower, which then waits until it applied the write
// itself so that a read of its state that follows sees it. It waits for a leader while there is none and
// retries when the leader changes before the command was accepted, until
// ctx (or ApplyTimeout, when ctx has no deadline) expires. Validation
// failures come back as errors matching the sentinels with errors.Is.
func (s *Store) Apply(ctx context.Context, op Op) (Result, error) {
	cmd, err := NewCommand(op)
	if err != nil {
		return Result{}, err
	}
	return s.ApplyCommand(ctx, cmd)
}

// ApplyCommand is Apply for an already encoded command.
func (s *Store) ApplyCommand(ctx context.Context, cmd Command) (Result, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for {
		res, err := s.tryApply(ctx, cmd)
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-s.shutdownCh:
			return Result{}, ErrShutdown
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Store) tryApply(ctx context.Context, cmd Command) (Result, error) {
	if s.IsLeader() {
		return s.ApplyLeader(ctx, cmd)
	}
	name, addr := s.Leader()
	if name == "" {
		return Result{}, errorf(ErrNoLeader, "the cluster has no leader; check that a majority of agents are running")
	}
	if s.cfg.Forwarder == nil {
		return Result{}, errorf(ErrNoForwarder, "%s is not the leader (%s is) and has no Forwarder; send the write to the leader", s.cfg.Name, name)
	}
	res, err := s.cfg.Forwarder.Forward(ctx, Peer{Name: name, RaftAddr: addr}, cmd)
	if err != nil || res.Index == 0 {
		return res, err
	}
	// Read your writes: the caller reads this node's state next, which must
	// hold what the leader committed. The write is in either way; a wait cut
	// short by ctx only means a read may still lag.
	if werr := s.WaitIndex(ctx, res.Index); werr != nil {
		s.log.Warn("a write forwarded to the leader committed, but this node had not applied it yet when the wait ended",
			"index", res.Index, "err", werr)
	}
	return res, nil
}

// ApplyLeader applies cmd through raft on this node and never forwards: it
// fails with ErrNotLeader on a follower. The agent API calls it for writes
// forwarded to it (see ServeForward).
func (s *Store) ApplyLeader(ctx context.Context, cmd Command) (Result, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	data, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, errorf(ErrInvalid, "encode command: %v", err)
	}
	dl, _ := ctx.Deadline()
	f := s.raft.Apply(data, time.Until(dl))
	if err := waitFuture(ctx, f); err != nil && err == ctx.Err() {
		return Result{}, fmt.Errorf("waiting for %s to commit: %w", cmd.Type, err)
	} else if err != nil {
		return Result{}, raftError(err, s.cfg.Name)
	}
	resp, ok := f.Response().(Response)
	if !ok {
		return Result{}, errorf(ErrInternal, "FSM returned %T", f.Response())
	}
	return resp.Result, resp.Err
}

func raftError(err error, name string) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return errorf(ErrNotLeader, "%s is not the leader: %v", name, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return errorf(ErrLeadershipLost, "%s lost leadership during the write; it may or may not have been applied; check the state and retry", name)
	case errors.Is(err, raft.ErrRaftShutdown):
		return errorf(ErrShutdown, "%s is shutting down", name)
	}
	return fmt.Errorf("raft: %w", err)
}
