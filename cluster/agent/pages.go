package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/transfer/sshx"
	"github.com/klauspost/compress/zstd"
)

// channelPages carries CRIU's page-server protocol from the source's CRIU (which connects to a port on the
// source's loopback) to the target's page server (on the target's loopback). Only agents may open it, and
// only to the page server of a migration the target prepared. Both ends hash the bytes that go from the
// source to the target, and the target compares before it restores: the pages are checked end to end.
const channelPages = "ferry-pages"

type pagesHeader struct {
	ID   string `json:"id"`
	Zstd bool   `json:"zstd,omitempty"` // the source-to-target direction is a zstd stream
}

// pageSum is the hash and size of what went through a page tunnel in the source-to-target direction.
type pageSum struct {
	SHA256 string
	Bytes  int64
	Wire   int64 // bytes that went on the channel (compressed), on the source's side
	Err    error
}

type pageSums struct {
	mu   sync.Mutex
	sums map[string]chan pageSum
}

func (p *pageSums) slot(id string) chan pageSum {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sums == nil {
		p.sums = map[string]chan pageSum{}
	}
	ch, ok := p.sums[id]
	if !ok {
		ch = make(chan pageSum, 1)
		p.sums[id] = ch
	}
	return ch
}

func (p *pageSums) drop(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.sums, id)
}

// servePages is the target's end of a page tunnel.
func (a *Agent) servePages(ctx context.Context, ch *sshx.Channel) {
	var h pagesHeader
	if err := json.Unmarshal(ch.ExtraData(), &h); err != nil {
		return
	}
	in, err := a.node.Incoming(h.ID)
	if err != nil || in.PagePort == 0 {
		a.log.Warn("page tunnel for an unknown migration refused", "id", h.ID, "peer", ch.Peer().Name)
		return
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", in.PagePort), 5*time.Second)
	if err != nil {
		a.pages.slot(h.ID) <- pageSum{Err: fmt.Errorf("connecting to the page server: %w", err)}
		return
	}
	defer conn.Close()
	var from io.ReadWriter = ch
	if h.Zstd {
		dec, err := zstd.NewReader(ch, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
		if err != nil {
			a.pages.slot(h.ID) <- pageSum{Err: err}
			return
		}
		defer dec.Close()
		from = readWriter{Reader: dec, Writer: ch, closeWrite: ch.CloseWrite}
	}
	sum, n, err := splice(from, conn)
	a.pages.slot(h.ID) <- pageSum{SHA256: sum, Bytes: n, Err: err}
}

// pageTunnel is the source's end: it listens on the source's loopback for CRIU's connection and forwards it
// to the target agent's page server. done returns the hash and size of what was sent.
type pageTunnel struct {
	ln     net.Listener
	result chan pageSum
}

func (a *Agent) openPageTunnel(ctx context.Context, targetAddr, id string) (*pageTunnel, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &pageTunnel{ln: ln, result: make(chan pageSum, 1)}
	zstdOn := !a.fault("no-page-compression")
	extra, _ := json.Marshal(pagesHeader{ID: id, Zstd: zstdOn})
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.result <- pageSum{Err: err}
			return
		}
		defer c.Close()
		ch, err := a.pool.Open(ctx, targetAddr, channelPages, extra)
		if err != nil {
			t.result <- pageSum{Err: fmt.Errorf("opening the page tunnel to %s: %w", targetAddr, err)}
			return
		}
		defer ch.Close()
		wire := &countingRW{ReadWriter: ch}
		var to io.ReadWriter = wire
		if zstdOn {
			enc, err := newFlushingEncoder(wire)
			if err != nil {
				t.result <- pageSum{Err: err}
				return
			}
			to = enc
		}
		if a.fault("corrupt-pages") {
			to = &corrupter{ReadWriter: to, at: 1 << 20} // after the hash, before the wire
		}
		sum, n, err := splice(c, to)
		t.result <- pageSum{SHA256: sum, Bytes: n, Wire: wire.n.Load(), Err: err}
	}()
	return t, nil
}

// Addr is where CRIU on the source sends the pages.
func (t *pageTunnel) Addr() string { return t.ln.Addr().String() }

// Wait returns what went through, once CRIU closed its connection.
func (t *pageTunnel) Wait(ctx context.Context) pageSum {
	select {
	case r := <-t.result:
		return r
	case <-ctx.Done():
		t.ln.Close()
		return pageSum{Err: ctx.Err()}
	}
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways between from (the side CRIU's client is on) and to, hashing what goes from
// from to to, until both directions end. It returns that direction's sha256 and size.
func splice(from, to io.ReadWriter) (string, int64, error) {
	h := sha256.New()
	var n int64
	var fwdErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A large buffer: CRIU sends pages in big runs, and each write here becomes one compressed block.
		buf := make([]byte, 1<<20)
		n, fwdErr = io.CopyBuffer(io.MultiWriter(to, hashWriter{h}), onlyReader{from}, buf)
		if cw, ok := to.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, backErr := io.Copy(from, to)
	if cw, ok := from.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	<-done
	err := fwdErr
	if err == nil && backErr != nil && !errors.Is(backErr, net.ErrClosed) {
		err = backErr
	}
	return hex.EncodeToString(h.Sum(nil)), n, err
}

type hashWriter struct{ h hash.Hash }

func (w hashWriter) Write(p []byte) (int, error) { return w.h.Write(p) }

// corrupter flips one byte of what is written through it, at offset at (fault injection for tests).
type corrupter struct {
	io.ReadWriter
	at, n int64
}

func (c *corrupter) Write(p []byte) (int, error) {
	if c.at >= c.n && c.at < c.n+int64(len(p)) {
		q := append([]byte(nil), p...)
		q[c.at-c.n] ^= 0x5a
		p = q
	}
	c.n += int64(len(p))
	return c.ReadWriter.Write(p)
}

func (c *corrupter) CloseWrite() error {
	if cw, ok := c.ReadWriter.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// readWriter joins a reader (a decompressor) with the channel's writing side.
type readWriter struct {
	io.Reader
	io.Writer
	closeWrite func() error
}

func (rw readWriter) CloseWrite() error { return rw.closeWrite() }

// flushingEncoder compresses what is written through it with zstd and flushes after every write, so that
// CRIU's page-server messages are never held back waiting for more data (the protocol has replies).
// Random memory does not compress; text and zeroes do, and the link carries less.
type flushingEncoder struct {
	to  io.ReadWriter
	enc *zstd.Encoder
}

func newFlushingEncoder(to io.ReadWriter) (*flushingEncoder, error) {
	enc, err := zstd.NewWriter(to, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, err
	}
	return &flushingEncoder{to: to, enc: enc}, nil
}

func (f *flushingEncoder) Write(p []byte) (int, error) {
	n, err := f.enc.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.enc.Flush()
}

func (f *flushingEncoder) Read(p []byte) (int, error) { return f.to.Read(p) }

// CloseWrite ends the zstd stream and then the channel's sending side.
func (f *flushingEncoder) CloseWrite() error {
	err := f.enc.Close()
	if cw, ok := f.to.(closeWriter); ok {
		if cerr := cw.CloseWrite(); err == nil {
			err = cerr
		}
	}
	return err
}

// countingRW counts the bytes written through it (safe to read from another goroutine).
type countingRW struct {
	io.ReadWriter
	n atomic.Int64
}

func (c *countingRW) Write(p []byte) (int, error) {
	n, err := c.ReadWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingRW) CloseWrite() error {
	if cw, ok := c.ReadWriter.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// onlyReader hides a reader's WriterTo, so that io.CopyBuffer uses the buffer it is given.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
