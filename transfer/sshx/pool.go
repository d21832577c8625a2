package sshx

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// MaxSlots bounds the connections a pool keeps to one address (see OpenOn).
const MaxSlots = 16

// Pool keeps one SSH connection per address (and per slot, see OpenOn) and opens channels on it,
// dialling again when the connection broke (keepalives detect a dead peer
// within Dialer.KeepAlive). Safe for concurrent use.
type Pool struct {
	d *Dialer

	mu     sync.Mutex
	conns  map[string]*poolEntry
	closed bool
}

// poolEntry is one address's connection; ready is closed once conn or err
// is set.
type poolEntry struct {
	ready chan struct{}
	conn  *Conn
	err   error
}

// NewPool returns a pool that dials with d.
func NewPool(d *Dialer) *Pool {
	return &Pool{d: d, conns: map[string]*poolEntry{}}
}

func (p *Pool) log() *slog.Logger { return p.d.log() }

// Conn returns the live connection to addr, dialling if there is none.
// Callers waiting for the same dial share its result.
func (p *Pool) Conn(ctx context.Context, addr string) (*Conn, error) {
	return p.conn(ctx, addr, 0)
}

// slotKey names connection slot of addr in the pool; slot 0 is the ordinary connection.
func slotKey(addr string, slot int) string {
	if slot == 0 {
		return addr
	}
	return fmt.Sprintf("%s#%d", addr, slot)
}

func (p *Pool) conn(ctx context.Context, addr string, slot int) (*Conn, error) {
	key := slotKey(addr, slot)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("pool: %w", ErrClosed)
	}
	e, ok := p.conns[key]
	if ok {
		select {
		case <-e.ready:
			if e.err != nil || e.conn.broken() {
				ok = false
			}
		default:
		}
	}
	if !ok {
		e = &poolEntry{ready: make(chan struct{})}
		p.conns[key] = e
		p.mu.Unlock()
		e.conn, e.err = p.d.Dial(ctx, addr)
		close(e.ready)
		if e.err != nil {
			p.drop(key, e)
		}
		return e.conn, e.err
	}
	p.mu.Unlock()
	select {
	case <-e.ready:
		return e.conn, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drop forgets e if it is still the entry for key, and closes its conn.
func (p *Pool) drop(key string, e *poolEntry) {
	p.mu.Lock()
	if p.conns[key] == e {
		delete(p.conns, key)
	}
	p.mu.Unlock()
	if e.conn != nil {
		e.conn.Close()
	}
}

// Open opens a channel of type typ to the agent at addr. If the pooled
// connection turns out to be broken it dials once more. The returned
// net.Conn is a *Channel.
func (p *Pool) Open(ctx context.Context, addr, typ string, extra []byte) (net.Conn, error) {
	return p.OpenOn(ctx, addr, 0, typ, extra)
}

// OpenOn is Open on connection slot of addr: the pool keeps a separate SSH connection to addr for every
// slot, so that channels on different slots are encrypted and carried in parallel (one connection's
// packets go through one lock and one reader). Slot 0 is the connection Open uses.
func (p *Pool) OpenOn(ctx context.Context, addr string, slot int, typ string, extra []byte) (net.Conn, error) {
	if slot < 0 || slot >= MaxSlots {
		return nil, fmt.Errorf("pool: connection slot %d, want 0..%d", slot, MaxSlots-1)
	}
	key := slotKey(addr, slot)
	for attempt := 0; ; attempt++ {
		c, err := p.conn(ctx, addr, slot)
		if err != nil {
			return nil, err
		}
		ch, err := c.OpenChannel(ctx, typ, extra)
		if err == nil {
			return ch, nil
		}
		if isOpenRefusal(err) || ctx.Err() != nil || attempt > 0 {
			return nil, err
		}
		p.log().Debug("pooled connection broken; dialling again", "addr", addr, "err", err)
		p.mu.Lock()
		e := p.conns[key]
		p.mu.Unlock()
		if e != nil && e.conn == c {
			p.drop(key, e)
		}
	}
}

// Close closes every pooled connection; later calls fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	entries := p.conns
	p.conns = map[string]*poolEntry{}
	p.mu.Unlock()
	for _, e := range entries {
		<-e.ready
		if e.conn != nil {
			e.conn.Close()
		}
	}
	return nil
}

// HTTPTransport returns an http.Transport whose connections are channels
// of channelType opened through pool: a request to "http://ADDR/path" goes
// to the agent whose SSH port is ADDR (host:port). Idle HTTP connections
// are kept per agent like any keep-alive connection.
func HTTPTransport(pool *Pool, channelType string) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return pool.Open(ctx, addr, channelType, nil)
		},
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
		ForceAttemptHTTP2:     false,
	}
}
