package sshx

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Roles a peer can have. A connection has exactly one role, fixed when it
// authenticates.
const (
	RoleAgent      = "agent"      // another agent, by CA-signed user certificate
	RoleController = "controller" // an operator key that may change things
	RoleViewer     = "viewer"     // an operator key that may only read
	RoleJoining    = "joining"    // a node holding a join token; join channel only
)

// Peer is who is at the other end of a connection, as authenticated.
type Peer struct {
	Role        string // one of the Role constants
	Name        string // node name (agents, joining nodes) or operator name
	Fingerprint string // SHA256 fingerprint of the key that authenticated
}

// readBufSize is the chunk the background reader takes from the SSH channel.
const readBufSize = 64 << 10

type readResult struct {
	n   int
	err error
}

// Channel is one SSH channel with the identity of the peer that opened it
// (server side) or that we opened it to (client side). It implements
// net.Conn, so HTTP, raft and io.Copy use it directly.
//
// Deadlines are real: a Read blocked past its read deadline returns
// os.ErrDeadlineExceeded and the data it was waiting for is kept for the
// next Read (reads go through one background goroutine per channel). A Write
// blocked past its write deadline closes the channel, because an SSH channel
// cannot take back data it has begun to send. Read is not for concurrent
// use from several goroutines (as with any stream); Write and Close are.
type Channel struct {
	ch     ssh.Channel
	peer   Peer
	typ    string
	extra  []byte
	local  net.Addr
	remote net.Addr

	closeOnce sync.Once
	closed    chan struct{}

	readerOnce sync.Once
	want       chan struct{}
	got        chan readResult
	buf        []byte

	rmu         sync.Mutex // held by Read
	pending     []byte     // unread part of buf
	outstanding bool       // the reader owns buf
	readErr     error      // sticky error from the reader

	dmu     sync.Mutex
	rdl     time.Time
	rdlWake chan struct{} // closed and replaced when rdl changes
	wdl     atomic.Int64  // unix nanoseconds, 0 = none
}

func newChannel(ch ssh.Channel, reqs <-chan *ssh.Request, typ string, extra []byte, peer Peer, local, remote net.Addr) *Channel {
	go ssh.DiscardRequests(reqs)
	return &Channel{
		ch: ch, peer: peer, typ: typ, extra: extra, local: local, remote: remote,
		closed:  make(chan struct{}),
		want:    make(chan struct{}, 1),
		got:     make(chan readResult, 1),
		rdlWake: make(chan struct{}),
	}
}

// Peer returns the authenticated identity of the other side.
func (c *Channel) Peer() Peer { return c.peer }

// Type returns the channel type, e.g. "ferry-raft".
func (c *Channel) Type() string { return c.typ }

// ExtraData returns the bytes sent with the channel open request.
func (c *Channel) ExtraData() []byte { return c.extra }

// Done is closed when Close has been called.
func (c *Channel) Done() <-chan struct{} { return c.closed }

// LocalAddr returns the local address of the SSH connection.
func (c *Channel) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the remote address of the SSH connection.
func (c *Channel) RemoteAddr() net.Addr { return c.remote }

// Close closes the channel in both directions. It is safe to call twice.
func (c *Channel) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.ch.Close()
	})
	if err == io.EOF {
		err = nil
	}
	return err
}

// CloseWrite sends EOF to the peer; reading continues.
func (c *Channel) CloseWrite() error { return c.ch.CloseWrite() }

func (c *Channel) reader() {
	for {
		select {
		case <-c.want:
		case <-c.closed:
			return
		}
		n, err := c.ch.Read(c.buf)
		c.got <- readResult{n, err}
		if err != nil {
			return
		}
	}
}

// Read reads from the channel, honouring the read deadline.
func (c *Channel) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if len(c.pending) > 0 && len(p) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		dl, wake := c.readDeadline()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		if len(p) == 0 {
			return 0, nil
		}
		if !c.outstanding {
			c.readerOnce.Do(func() {
				c.buf = make([]byte, readBufSize)
				go c.reader()
			})
			c.outstanding = true
			c.want <- struct{}{}
		}
		if err := c.wait(dl, wake); err != nil {
			return 0, err
		}
	}
}

// wait waits for the outstanding read, the deadline dl, a change of
// deadline (wake) or Close. It returns nil when Read should look again.
func (c *Channel) wait(dl time.Time, wake <-chan struct{}) error {
	var timeout <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-c.got:
		c.outstanding = false
		c.pending = c.buf[:r.n]
		c.readErr = r.err
		return nil
	case <-timeout:
		return os.ErrDeadlineExceeded
	case <-wake: // deadline changed: look again
		return nil
	case <-c.closed:
		return net.ErrClosed
	}
}

func (c *Channel) readDeadline() (time.Time, <-chan struct{}) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.rdl, c.rdlWake
}

// Write writes to the channel. If the write deadline passes while Write is
// blocked (the peer's window is full), the channel is closed and Write
// returns os.ErrDeadlineExceeded.
func (c *Channel) Write(p []byte) (int, error) {
	dl := c.wdl.Load()
	if dl == 0 {
		return c.ch.Write(p)
	}
	d := time.Until(time.Unix(0, dl))
	if d <= 0 {
		return 0, os.ErrDeadlineExceeded
	}
	var expired atomic.Bool
	t := time.AfterFunc(d, func() {
		expired.Store(true)
		c.Close()
	})
	n, err := c.ch.Write(p)
	if !t.Stop() && expired.Load() && err != nil {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// SetDeadline sets the read and write deadlines.
func (c *Channel) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a zero time means none. It wakes
// a Read that is blocked, as net.Conn requires.
func (c *Channel) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	c.rdl = t
	close(c.rdlWake)
	c.rdlWake = make(chan struct{})
	c.dmu.Unlock()
	return nil
}

// SetWriteDeadline sets the write deadline; a zero time means none.
func (c *Channel) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.wdl.Store(0)
	} else {
		c.wdl.Store(t.UnixNano())
	}
	return nil
}

var _ net.Conn = (*Channel)(nil)

type peerKey struct{}

// PeerFromConn returns the authenticated peer of a connection accepted from
// HTTPListener or a raft StreamLayer; ok is false for any other net.Conn.
func PeerFromConn(c net.Conn) (Peer, bool) {
	ch, ok := c.(*Channel)
	if !ok {
		return Peer{}, false
	}
	return ch.peer, true
}

// ConnContext has the signature of http.Server.ConnContext: it stores the
// connection's peer in the context, where PeerFromContext finds it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if p, ok := PeerFromConn(c); ok {
		return context.WithValue(ctx, peerKey{}, p)
	}
	return ctx
}

// PeerFromContext returns the peer stored by ConnContext (in an HTTP
// handler: PeerFromContext(r.Context())).
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}
