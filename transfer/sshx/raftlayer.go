package sshx

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer carries raft's NetworkTransport over ChannelRaft channels:
// Accept yields channels that other agents opened (only RoleAgent may),
// Dial opens one through the pool. Use it as
//
//	layer := sshx.NewStreamLayer(srv, pool, advertise)
//	trans := raft.NewNetworkTransport(layer, 3, 10*time.Second, logOutput)
//
// where raft server addresses are the agents' SSH addresses (host:port).
type StreamLayer struct {
	*chanListener
	pool *Pool
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer registers ChannelRaft on srv. advertise is the address
// other agents dial (this agent's SSH address); Addr returns it.
func NewStreamLayer(srv *Server, pool *Pool, advertise net.Addr) *StreamLayer {
	return &StreamLayer{chanListener: srv.listen(ChannelRaft, []string{RoleAgent}, advertise), pool: pool}
}

// Dial opens a raft channel to the agent at address within timeout.
func (l *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	return l.pool.Open(ctx, string(address), ChannelRaft, nil)
}
