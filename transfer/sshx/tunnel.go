package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Tunnels carry TCP to a port on the target agent's loopback. They exist
// for CRIU's page server and `criu lazy-pages`, whose sockets are plain,
// unauthenticated TCP: on the target they listen only on 127.0.0.1, the
// target agent opens their port with AllowTunnel for the time of one
// migration, and the source agent forwards the local connection of its own
// CRIU through a ChannelTunnel (Pool.ForwardTunnel). No CRIU socket is ever
// reachable from another host.

// tunnelDialTimeout bounds the connection to the loopback target.
const tunnelDialTimeout = 5 * time.Second

type tunnelRequest struct {
	Port uint32
}

// TunnelExtra returns the extra data of a ChannelTunnel open request for
// port (SSH wire format: one uint32).
func TunnelExtra(port int) []byte {
	return ssh.Marshal(tunnelRequest{Port: uint32(port)})
}

// AllowTunnel lets agents open tunnels to 127.0.0.1:port until release is
// called. Calls nest: a port stays allowed while any holder has not
// released it. release is idempotent. Tunnels already open are not cut by
// release; only new ones are refused.
func (s *Server) AllowTunnel(port int) (release func()) {
	s.mu.Lock()
	s.tunnels[port]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.tunnels[port]--; s.tunnels[port] <= 0 {
				delete(s.tunnels, port)
			}
		})
	}
}

func (s *Server) tunnelAllowed(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tunnels[port] > 0
}

// serveTunnel is the raw route of ChannelTunnel: it checks the port, dials
// 127.0.0.1 before accepting (so a refusal reaches the client as an open
// failure), then copies both ways.
func (s *Server) serveTunnel(ctx context.Context, sc *ssh.ServerConn, p Peer, nch ssh.NewChannel) {
	var req tunnelRequest
	if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil || req.Port == 0 || req.Port > 65535 {
		nch.Reject(ssh.ConnectionFailed, "tunnel request must name a port (1-65535)")
		return
	}
	port := int(req.Port)
	if !s.tunnelAllowed(port) {
		s.log.Warn("tunnel refused: port not allowed", "port", port, "peer", p.Name)
		nch.Reject(ssh.Prohibited, fmt.Sprintf("port %d on node %s is not open for tunnels; the target agent opens it (AllowTunnel) only while a migration uses it", port, s.cfg.Identity.Name))
		return
	}
	d := net.Dialer{Timeout: tunnelDialTimeout}
	tc, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, fmt.Sprintf("node %s: nothing listens on 127.0.0.1:%d: %v", s.cfg.Identity.Name, port, err))
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		tc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	splice(ctx, ch, tc)
}

// closeWriter is a connection whose write half can be closed alone.
type closeWriter interface{ CloseWrite() error }

// splice copies a to b and b to a until both directions ended or ctx is
// cancelled, passing each EOF on as a half-close, then closes both.
func splice(ctx context.Context, a, b io.ReadWriteCloser) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	var wg sync.WaitGroup
	cp := func(dst, src io.ReadWriteCloser) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// Tunnel opens a tunnel to 127.0.0.1:port on the agent at addr. Errors wrap
// ErrTunnelRefused when the port is not open there.
func (p *Pool) Tunnel(ctx context.Context, addr string, port int) (net.Conn, error) {
	return p.Open(ctx, addr, ChannelTunnel, TunnelExtra(port))
}

// ForwardTunnel accepts connections on ln (typically 127.0.0.1:0, where the
// source's CRIU connects) and forwards each through a tunnel to port on the
// agent at addr. It returns when ctx is cancelled (closing ln) or Accept
// fails; connections in flight are closed with ctx.
func (p *Pool) ForwardTunnel(ctx context.Context, ln net.Listener, addr string, port int) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		lc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := p.Tunnel(ctx, addr, port)
			if err != nil {
				p.log().Warn("tunnel failed", "addr", addr, "port", port, "err", err)
				lc.Close()
				return
			}
			splice(ctx, lc, rc)
		}()
	}
}
