package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/transfer/sshx"
	"github.com/ferryhq/ferry/transfer/stripe"
)

// channelPages carries CRIU's page-server protocol from the source's CRIU (which connects to a port on the
// source's loopback) to the target's page server (on the target's loopback). Only agents may open it, and
// only to the page server of a migration the target prepared. The source-to-target direction is striped
// over several channels, each on its own SSH connection (transfer/stripe: frames with CRC32C, zstd where
// it pays); both ends make the stream's digest (SHA-256 over every frame's sequence number, length and
// CRC32C, which the target checks against each frame's bytes) and the target compares before it restores, so
// the pages are checked end to end. The replies of the page server go back on lane 0; a lane other than
// 0 carries back, in the other direction, the target's reason if it refused the stream.
const channelPages = "ferry-pages"

type pagesHeader struct {
	ID    string `json:"id"`
	Lane  int    `json:"lane"`
	Lanes int    `json:"lanes"`
	Zstd  bool   `json:"zstd,omitempty"` // the sender compresses frames (informational: the receiver takes both)
}

// pageSum is the digest (see transfer/stripe) and size of what went through a page tunnel in the
// source-to-target direction.
type pageSum struct {
	Digest string
	Bytes  int64
	Wire   int64 // bytes that went on the channels (framed, compressed)
	Err    error
}

type pageSums struct {
	mu    sync.Mutex
	sums  map[string]chan pageSum
	lanes laneGatherer
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

// laneGroup gathers the channels of one striped transfer as they are opened; the one that completes it runs
// the transfer while the others wait for done (a channel closes when its handler returns).
type laneGroup struct {
	lanes  []*sshx.Channel
	joined int
	done   chan struct{}
}

// laneGatherTimeout bounds how long the first lane of a transfer waits for the others.
const laneGatherTimeout = 30 * time.Second

// laneGatherer holds the incomplete groups by transfer.
type laneGatherer struct {
	mu     sync.Mutex
	groups map[string]*laneGroup
}

// join adds lane lane of lanes to transfer key; it returns the group and whether this lane completed it.
func (p *laneGatherer) join(key string, lane, lanes int, ch *sshx.Channel) (*laneGroup, bool, error) {
	if lanes < 1 || lanes > sshx.MaxSlots || lane < 0 || lane >= lanes {
		return nil, false, fmt.Errorf("lane %d of %d", lane, lanes)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.groups == nil {
		p.groups = map[string]*laneGroup{}
	}
	g, ok := p.groups[key]
	if !ok {
		g = &laneGroup{lanes: make([]*sshx.Channel, lanes), done: make(chan struct{})}
		p.groups[key] = g
	}
	if len(g.lanes) != lanes || g.lanes[lane] != nil {
		return nil, false, fmt.Errorf("lane %d of %d does not fit the transfer's %d lanes", lane, lanes, len(g.lanes))
	}
	g.lanes[lane] = ch
	g.joined++
	if g.joined == len(g.lanes) {
		delete(p.groups, key)
		return g, true, nil
	}
	return g, false, nil
}

// forget drops an incomplete group (its lanes gave up waiting); false if it completed meanwhile.
func (p *laneGatherer) forget(key string, g *laneGroup) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.groups[key] == g {
		delete(p.groups, key)
		return true
	}
	return false
}

// wait is what a lane that did not complete its group does: it waits for the transfer to end (or for
// the timeout, and then reports false if the group never completed).
func (p *laneGatherer) wait(ctx context.Context, key string, g *laneGroup) bool {
	t := time.NewTimer(laneGatherTimeout)
	defer t.Stop()
	select {
	case <-g.done:
		return true
	case <-t.C:
		if p.forget(key, g) {
			return false
		}
		<-g.done // completed just now: the transfer runs on these channels
		return true
	case <-ctx.Done():
		return true
	}
}

// servePages is the target's end of a page tunnel: one call per lane.
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
	g, last, err := a.pages.lanes.join(h.ID, h.Lane, h.Lanes, ch)
	if err != nil {
		a.log.Warn("page tunnel lane refused", "id", h.ID, "peer", ch.Peer().Name, "err", err)
		return
	}
	if !last {
		if !a.pages.lanes.wait(ctx, h.ID, g) {
			a.pages.slot(h.ID) <- pageSum{Err: fmt.Errorf("not all of the page tunnel's %d lanes arrived", len(g.lanes))}
		}
		return
	}
	defer close(g.done)
	a.pages.slot(h.ID) <- a.receivePages(ctx, g.lanes, in.PagePort)
}

// receivePages feeds the page server on port with the stream striped over lanes, and the page server's
// replies back on lane 0.
func (a *Agent) receivePages(ctx context.Context, lanes []*sshx.Channel, port int) pageSum {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return pageSum{Err: fmt.Errorf("connecting to the page server: %w", err)}
	}
	defer conn.Close()
	replies := make(chan error, 1)
	go func() {
		_, err := io.Copy(lanes[0], conn)
		_ = lanes[0].CloseWrite()
		replies <- err
	}()
	rs := make([]io.Reader, len(lanes))
	for i, l := range lanes {
		rs[i] = l
	}
	sum, err := stripe.Receive(ctx, rs, conn, stripe.Options{Depth: stripe.DefaultDepth})
	if errors.Is(err, stripe.ErrCorrupt) {
		err = fmt.Errorf("the pages arrived damaged, nothing will be restored from them: %w", err)
	}
	if err != nil {
		// Say why on the spare lanes (the source's CRIU only sees its page server go away), then drop it all.
		for _, l := range lanes[1:] {
			_, _ = l.Write([]byte(err.Error()))
			_ = l.CloseWrite()
		}
		conn.Close()
		for _, l := range lanes {
			l.Close()
		}
		return pageSum{Err: err}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	for _, l := range lanes[1:] {
		_ = l.CloseWrite()
	}
	select {
	case err = <-replies:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return pageSum{Err: fmt.Errorf("page server replies: %w", err)}
	}
	return pageSum{Digest: sum.Digest, Bytes: sum.Bytes, Wire: sum.Wire}
}

// pageTunnel is the source's end: it listens on the source's loopback for CRIU's connection and forwards it
// to the target agent's page server over its lanes. Wait returns the hash and size of what was sent.
type pageTunnel struct {
	ln     net.Listener
	lanes  []net.Conn
	result chan pageSum
}

// openPageTunnel opens the lanes to the target at once (before anything is frozen) and forwards CRIU's
// connection over them when it comes.
func (a *Agent) openPageTunnel(ctx context.Context, targetAddr, id string) (*pageTunnel, error) {
	n := a.cfg.Lanes
	zstdOn := !a.fault("no-page-compression")
	lanes := make([]net.Conn, n)
	closeAll := func() {
		for _, l := range lanes {
			if l != nil {
				l.Close()
			}
		}
	}
	errs := make(chan error, n)
	for i := range lanes {
		go func() {
			extra, _ := json.Marshal(pagesHeader{ID: id, Lane: i, Lanes: n, Zstd: zstdOn})
			ch, err := a.pool.OpenOn(ctx, targetAddr, i, channelPages, extra)
			lanes[i] = ch
			errs <- err
		}()
	}
	var err error
	for range lanes {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("opening the page tunnel to %s: %w", targetAddr, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeAll()
		return nil, err
	}
	t := &pageTunnel{ln: ln, lanes: lanes, result: make(chan pageSum, 1)}
	opts := stripe.Options{Compress: zstdOn}
	if a.fault("corrupt-pages") {
		opts.Tamper = flipAt(1 << 20) // after the frame's CRC was taken, before the wire
	}
	go func() {
		defer closeAll()
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.result <- pageSum{Err: err}
			return
		}
		defer c.Close()
		tc := c.(*net.TCPConn)
		go func() { // CRIU corks its connection; uncorked, its close request does not wait out the kernel's timer
			if err := criu.UncorkPeer(tc); err != nil {
				a.log.Debug("could not uncork CRIU's page-server connection; its close will wait up to 200 ms", "err", err)
			}
		}()
		t.result <- a.sendPages(ctx, tc, lanes, opts)
	}()
	return t, nil
}

// sendPages forwards CRIU's connection c over lanes until CRIU is done and the target's page server has
// answered everything.
func (a *Agent) sendPages(ctx context.Context, c *net.TCPConn, lanes []net.Conn, opts stripe.Options) pageSum {
	replies := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, lanes[0])
		_ = c.CloseWrite()
		replies <- err
	}()
	reasons := make(chan string, len(lanes))
	for _, l := range lanes[1:] {
		go func() {
			b, _ := io.ReadAll(io.LimitReader(l, 4<<10))
			reasons <- strings.TrimSpace(string(b))
		}()
	}
	reason := func() string { // the target's word, if it refused the stream
		t := time.NewTimer(time.Second)
		defer t.Stop()
		for range lanes[1:] {
			select {
			case r := <-reasons:
				if r != "" {
					return r
				}
			case <-t.C:
				return ""
			}
		}
		return ""
	}
	ws := make([]io.Writer, len(lanes))
	for i, l := range lanes {
		ws[i] = l
	}
	sum, err := stripe.Send(ctx, c, ws, opts)
	if err != nil {
		if r := reason(); r != "" {
			err = fmt.Errorf("the target refused the pages: %s", r)
		}
		return pageSum{Err: err}
	}
	for _, l := range lanes {
		_ = l.(closeWriter).CloseWrite()
	}
	select {
	case err = <-replies:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if r := reason(); r != "" {
		return pageSum{Err: fmt.Errorf("the target refused the pages: %s", r)}
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return pageSum{Err: err}
	}
	return pageSum{Digest: sum.Digest, Bytes: sum.Bytes, Wire: sum.Wire}
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
		for _, l := range t.lanes {
			l.Close()
		}
		return pageSum{Err: ctx.Err()}
	}
}

type closeWriter interface{ CloseWrite() error }

// flipAt returns a stripe tamper hook that flips the byte at stream offset at (fault injection for tests).
func flipAt(at int64) func(off int64, raw []byte) {
	return func(off int64, raw []byte) {
		if at >= off && at < off+int64(len(raw)) {
			raw[at-off] ^= 0x5a
		}
	}
}
