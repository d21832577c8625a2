package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Server is one member of the raft configuration.
type Server struct {
	Name     string `json:"name"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Role is "leader", "voter" or "nonvoter", for 'ferry node ls'.
func (s Server) Role() string {
	switch {
	case s.Leader:
		return "leader"
	case s.Voter:
		return "voter"
	}
	return "nonvoter"
}

// Servers returns the raft configuration as this node knows it.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftError(err, s.cfg.Name)
	}
	leader, _ := s.Leader()
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{
			Name: string(sv.ID), RaftAddr: string(sv.Address),
			Voter: sv.Suffrage == raft.Voter, Leader: string(sv.ID) == leader,
		})
	}
	return out, nil
}

func (s *Store) notLeader(what string) error {
	name, addr := s.Leader()
	if name == "" {
		return errorf(ErrNoLeader, "cannot %s: the cluster has no leader; check that a majority of agents are running", what)
	}
	return errorf(ErrNotLeader, "cannot %s on %s: the leader is %s (%s); send it there", what, s.cfg.Name, name, addr)
}

// Join adds a server to the raft configuration as a voter while there are
// fewer than MaxVoters voters, else as a non-voter, and returns whether it
// became a voter. A server already present with the same address is left as
// it is; another server ID with the same address (a renamed host) is removed
// first. Leader only (else ErrNotLeader naming the leader).
func (s *Store) Join(ctx context.Context, name, raftAddr string) (voter bool, err error) {
	if name == "" || raftAddr == "" {
		return false, errorf(ErrInvalid, "join needs a node name and a raft address, got %q and %q", name, raftAddr)
	}
	if !s.IsLeader() {
		return false, s.notLeader("join " + name)
	}
	servers, err := s.Servers()
	if err != nil {
		return false, err
	}
	voters := 0
	for _, sv := range servers {
		if sv.Name == name && sv.RaftAddr == raftAddr {
			return sv.Voter, nil
		}
		if sv.Name != name && sv.RaftAddr == raftAddr {
			s.log.Warn("removing server with the joining node's address", "old", sv.Name, "new", name, "addr", raftAddr)
			if err := s.RemoveServer(ctx, sv.Name); err != nil {
				return false, err
			}
			continue
		}
		if sv.Voter && sv.Name != name {
			voters++
		}
	}
	if voters >= s.cfg.MaxVoters {
		s.log.Info("joining as non-voter", "node", name, "voters", voters, "max_voters", s.cfg.MaxVoters)
		return false, s.AddNonvoter(ctx, name, raftAddr)
	}
	return true, s.AddVoter(ctx, name, raftAddr)
}

// AddVoter adds (or updates the address of) a voting server. Leader only.
func (s *Store) AddVoter(ctx context.Context, name, raftAddr string) error {
	return s.configChange(ctx, "add voter "+name, func(t time.Duration) raft.IndexFuture {
		return s.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(raftAddr), 0, t)
	})
}

// AddNonvoter adds a server that replicates the log but does not vote.
// Leader only.
func (s *Store) AddNonvoter(ctx context.Context, name, raftAddr string) error {
	return s.configChange(ctx, "add non-voter "+name, func(t time.Duration) raft.IndexFuture {
		return s.raft.AddNonvoter(raft.ServerID(name), raft.ServerAddress(raftAddr), 0, t)
	})
}

// RemoveServer removes a server from the raft configuration. Leader only.
func (s *Store) RemoveServer(ctx context.Context, name string) error {
	return s.configChange(ctx, "remove server "+name, func(t time.Duration) raft.IndexFuture {
		return s.raft.RemoveServer(raft.ServerID(name), 0, t)
	})
}

func (s *Store) configChange(ctx context.Context, what string, f func(time.Duration) raft.IndexFuture) error {
	if !s.IsLeader() {
		return s.notLeader(what)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	dl, _ := ctx.Deadline()
	err := waitFuture(ctx, f(time.Until(dl)))
	switch {
	case err != nil && err == ctx.Err():
		return fmt.Errorf("%s: %w", what, err)
	case err != nil:
		return fmt.Errorf("%s: %w", what, raftError(err, s.cfg.Name))
	}
	s.log.Info("raft configuration changed", "change", what)
	return nil
}

// TransferLeadership hands leadership to another voter and waits until this node is a follower. Leader only.
func (s *Store) TransferLeadership(ctx context.Context) error {
	if !s.IsLeader() {
		return s.notLeader("transfer leadership")
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := waitFuture(ctx, s.raft.LeadershipTransfer()); err != nil {
		return fmt.Errorf("handing leadership over: %w", err)
	}
	return nil
}
