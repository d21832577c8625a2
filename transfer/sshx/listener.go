package sshx

import (
	"context"
	"net"
	"sync"
)

// chanAddr is the address of a channel listener: the channel type.
type chanAddr string

func (a chanAddr) Network() string { return "ssh" }
func (a chanAddr) String() string  { return string(a) }

// chanListener turns accepted channels of one type into net.Conns returned
// by Accept. Each channel stays open until the consumer closes it (or the
// SSH connection ends).
type chanListener struct {
	srv   *Server
	typ   string
	addr  net.Addr
	conns chan *Channel

	once sync.Once
	done chan struct{}
}

// listen registers a chanListener for typ; addr is what Addr reports
// (nil: the channel type).
func (s *Server) listen(typ string, roles []string, addr net.Addr) *chanListener {
	if addr == nil {
		addr = chanAddr(typ)
	}
	l := &chanListener{srv: s, typ: typ, addr: addr, conns: make(chan *Channel), done: make(chan struct{})}
	s.handle(typ, route{roles: append([]string(nil), roles...), h: l.serve, owner: l})
	return l
}

// HTTPListener returns a net.Listener whose Accept yields the channels of
// channelType opened by peers with one of roles, as net.Conns (*Channel).
// Serve an http.Server on it, with ConnContext set to sshx.ConnContext so
// that handlers can call PeerFromContext and enforce roles. Closing the
// listener unregisters channelType.
func (s *Server) HTTPListener(channelType string, roles []string) net.Listener {
	return s.listen(channelType, roles, nil)
}

func (l *chanListener) serve(ctx context.Context, c *Channel) {
	select {
	case l.conns <- c:
	case <-l.done:
		return
	case <-ctx.Done():
		return
	}
	select { // the consumer owns c now; keep the route's goroutine until it is done
	case <-c.Done():
	case <-ctx.Done():
	}
}

// Accept waits for the next channel.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and unregisters the channel type. Channels already
// accepted stay open.
func (l *chanListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.srv.unhandle(l.typ, l)
	})
	return nil
}

// Addr returns the advertised address, or the channel type.
func (l *chanListener) Addr() net.Addr { return l.addr }
