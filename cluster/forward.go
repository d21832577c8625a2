package cluster

import (
	"context"
	"encoding/json"
	"sync"
)

// Forwarder carries a write from a follower to the leader. The Store
// consumes it; the agent-to-agent API implements it over the network (the
// leader's API address is State().Nodes[leader.Name].Addr), and
// LocalForwarder implements it in one process for tests.
//
// Contract: Forward delivers cmd to the Store named by leader, which runs
// ServeForward (ApplyLeader), and returns its result and error, the error
// decoded with DecodeError so errors.Is matches this package's sentinels.
// Return an error matching ErrNotLeader when the receiver is not the leader,
// and ErrNoLeader when the request certainly did not reach it (the dial
// failed): the Store retries those two until its deadline. Any other error
// is returned to the caller as is, since the write may have happened.
// Forward is called concurrently.
type Forwarder interface {
	Forward(ctx context.Context, leader Peer, cmd Command) (Result, error)
}

// ForwardResponse is the wire form of a forwarded write's outcome.
type ForwardResponse struct {
	Result Result     `json:"result"`
	Error  *WireError `json:"error,omitempty"`
}

// Err returns the decoded error, nil on success.
func (r ForwardResponse) Err() error { return DecodeError(r.Error) }

// ServeForward applies a forwarded command on this node, which should be
// the leader, and returns the outcome in wire form. The agent API handler
// for forwarded writes is a thin wrapper around it.
func (s *Store) ServeForward(ctx context.Context, cmd Command) ForwardResponse {
	res, err := s.ApplyLeader(ctx, cmd)
	return ForwardResponse{Result: res, Error: EncodeError(err)}
}

// LocalForwarder is an in-process Forwarder: a registry of Stores by name.
// It sends the command and the response through their JSON wire form, as a
// network Forwarder would, so tests see what crossing the boundary does.
type LocalForwarder struct {
	mu     sync.RWMutex
	stores map[string]*Store
}

// NewLocalForwarder returns an empty registry.
func NewLocalForwarder() *LocalForwarder {
	return &LocalForwarder{stores: map[string]*Store{}}
}

// Register makes s reachable by its name.
func (f *LocalForwarder) Register(s *Store) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stores[s.Name()] = s
}

// Unregister makes the named store unreachable (as if its host went away).
func (f *LocalForwarder) Unregister(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stores, name)
}

// Forward implements Forwarder.
func (f *LocalForwarder) Forward(ctx context.Context, leader Peer, cmd Command) (Result, error) {
	f.mu.RLock()
	s := f.stores[leader.Name]
	f.mu.RUnlock()
	if s == nil {
		return Result{}, errorf(ErrNoLeader, "leader %s at %s is not reachable; retry when a new leader is elected", leader.Name, leader.RaftAddr)
	}
	req, err := roundTrip(cmd)
	if err != nil {
		return Result{}, err
	}
	resp, err := roundTrip(s.ServeForward(ctx, req))
	if err != nil {
		return Result{}, err
	}
	return resp.Result, resp.Err()
}

func roundTrip[T any](v T) (T, error) {
	var out T
	b, err := json.Marshal(v)
	if err != nil {
		return out, err
	}
	err = json.Unmarshal(b, &out)
	return out, err
}
