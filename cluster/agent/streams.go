package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node/images"
	"github.com/ferryhq/ferry/transfer/sshx"
	"github.com/ferryhq/ferry/transfer/stream"
)

// Kinds of directory streams between agents (the header rides in the channel's extra data).
const (
	streamMigration = "migration" // the non-page part of a migration's dump, into the prepared checkpoint
	streamImage     = "image"     // an image's missing layers (as tars) and its record
	streamDiscard   = "discard"   // received, checked and thrown away (benchmarks, tests)
	streamSnapshot  = "snapshot"  // a copy of a snapshot, checked against its manifest before it is kept
)

type streamHeader struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
	// A stream over several channels (stream.SendParallel): which transfer, which lane, of how many.
	Xfer  string `json:"xfer,omitempty"`
	Lane  int    `json:"lane,omitempty"`
	Lanes int    `json:"lanes,omitempty"`
	// On a snapshot copy: what it is for on the receiving node.
	copyUse
}

// parallelMin is the size from which a directory goes over several lanes: below it, opening the channels
// costs more than it brings.
const parallelMin = 16 << 20

// streamAck is the receiver's verdict, sent back on the channel once everything was received and checked.
type streamAck struct {
	OK    bool         `json:"ok"`
	Error string       `json:"error,omitempty"`
	Stats stream.Stats `json:"stats"`
}

// received remembers where a migration's stream landed, for the restore that follows.
type receivedSet struct {
	mu  sync.Mutex
	dir map[string]string
}

func (r *receivedSet) put(id, dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dir == nil {
		r.dir = map[string]string{}
	}
	r.dir[id] = dir
}

func (r *receivedSet) take(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.dir[id]
	delete(r.dir, id)
	return d, ok
}

// streamLanes is how many channels a directory stream of size bytes uses: one below parallelMin, else
// lanes but no more than the cores. A directory stream is bound by CPU (SHA-256 on both ends, zstd,
// encryption), not by one connection: sshx BenchmarkStream carried 256 MiB as fast over 2 connections as
// over 4 on 2 cores (493-535 against 302-519 MB/s) with 5-25% less CPU (834-882 against 929-1146 ms), and
// each lane costs buffers on both ends.
func streamLanes(lanes int, size int64) int {
	if size < parallelMin {
		return 1
	}
	return max(1, min(lanes, runtime.GOMAXPROCS(0)))
}

// sendDir streams dir to the agent at addr and waits for its verdict. A big directory goes over several
// channels, each on its own SSH connection (Config.Lanes), so that one connection's encryption does not
// bound it, its big files cut in pieces of chunk bytes (0: the stream's default); the verdict comes back on
// lane 0.
func (a *Agent) sendDir(ctx context.Context, addr string, h streamHeader, dir string, chunk int64, progress func(stream.Progress)) (stream.Stats, error) {
	// Sizes only: every chunk is hashed as it is read and checked as it arrives, so nothing reads the
	// files before the sending starts.
	m, err := stream.ListManifest(ctx, dir)
	if err != nil {
		return stream.Stats{}, err
	}
	n := streamLanes(a.cfg.Lanes, m.TotalSize())
	if n > 1 {
		h.Xfer, h.Lanes = rand.Text(), n
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	errs := make(chan error, n)
	for i := range conns {
		go func() {
			hi := h
			hi.Lane = i
			extra, _ := json.Marshal(hi)
			var err error
			conns[i], err = a.pool.OpenOn(ctx, addr, i, sshx.ChannelStream, extra)
			errs <- err
		}()
	}
	for range conns {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return stream.Stats{}, err
	}
	opts := stream.DefaultSendOptions()
	opts.Progress, opts.Logger = progress, a.log
	if chunk != 0 {
		opts.ChunkSize = chunk
	}
	// Frames in flight per stream: with several streams, two each keep the workers busy and the memory
	// (raw plus compressed frame) bounded to about 4*lanes MiB.
	opts.Depth = 2
	ws := make([]io.Writer, n)
	for i, c := range conns {
		ws[i] = c
	}
	st, err := stream.SendParallel(ctx, ws, dir, m, opts)
	if err != nil {
		// A receiver that refused the stream before its end stopped reading; its verdict says why.
		if ack, verr := readVerdict(conns[0], 2*time.Second); verr == nil && !ack.OK {
			return st, fmt.Errorf("the receiver at %s refused the stream: %s", addr, ack.Error)
		}
		return st, err
	}
	for _, c := range conns {
		if cw, ok := c.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
	}
	ack, err := readVerdict(conns[0], 2*time.Minute)
	if err != nil {
		return st, fmt.Errorf("no verdict from the receiver at %s: %w", addr, err)
	}
	if !ack.OK {
		return st, fmt.Errorf("the receiver at %s refused the stream: %s", addr, ack.Error)
	}
	return st, nil
}

// readVerdict reads the receiver's verdict on a stream from its lane 0, waiting at most wait.
func readVerdict(conn net.Conn, wait time.Duration) (streamAck, error) {
	var ack streamAck
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	line, err := bufio.NewReader(io.LimitReader(conn, 64<<10)).ReadBytes('\n')
	if err != nil {
		return ack, err
	}
	if err := json.Unmarshal(line, &ack); err != nil {
		return ack, fmt.Errorf("a bad verdict: %w", err)
	}
	return ack, nil
}

// serveStream receives a directory stream (one call per lane), checks it, hands it on by kind and sends
// the verdict back on lane 0.
func (a *Agent) serveStream(ctx context.Context, ch *sshx.Channel) {
	var h streamHeader
	err := json.Unmarshal(ch.ExtraData(), &h)
	lanes := []*sshx.Channel{ch}
	if err == nil && h.Lanes > 1 {
		g, last, jerr := a.streamLanes.join(ch.Peer().Name+"/"+h.Xfer, h.Lane, h.Lanes, ch)
		if jerr != nil {
			a.log.Warn("stream lane refused", "kind", h.Kind, "id", h.ID, "from", ch.Peer().Name, "err", jerr)
			return
		}
		if !last {
			if !a.streamLanes.wait(ctx, ch.Peer().Name+"/"+h.Xfer, g) {
				a.log.Warn("stream lanes missing; refused", "kind", h.Kind, "id", h.ID, "from", ch.Peer().Name, "lanes", h.Lanes)
			}
			return
		}
		defer close(g.done)
		lanes = g.lanes
	}
	var st stream.Stats
	if err == nil {
		rs := make([]io.Reader, len(lanes))
		for i, l := range lanes {
			rs[i] = l
		}
		var scratch string
		st, scratch, err = a.receive(ctx, rs, h)
		if scratch != "" {
			// Removed once the verdict is out: the sender need not wait for the file system.
			defer os.RemoveAll(scratch)
		}
	}
	ack := streamAck{OK: err == nil, Stats: st}
	if err != nil {
		ack.Error = err.Error()
		a.log.Warn("refused an incoming stream", "kind", h.Kind, "id", h.ID, "from", ch.Peer().Name, "err", err)
	}
	b, _ := json.Marshal(ack)
	_, _ = lanes[0].Write(append(b, '\n'))
	for _, l := range lanes {
		_ = l.CloseWrite()
	}
}

// receive takes one directory stream by its kind. scratch, when not empty, is a directory the caller
// removes after answering the sender.
func (a *Agent) receive(ctx context.Context, r []io.Reader, h streamHeader) (st stream.Stats, scratch string, err error) {
	base := filepath.Join(a.cfg.DataDir, "incoming")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return stream.Stats{}, "", err
	}
	opts := stream.DefaultReceiveOptions()
	opts.Logger = a.log
	// Migrations are restored at once and benchmark streams discarded: no need to wait for the disk.
	opts.Sync = h.Kind == streamImage || h.Kind == streamSnapshot
	switch h.Kind {
	case streamMigration:
		if _, err := a.node.Incoming(h.ID); err != nil {
			return stream.Stats{}, "", err
		}
		dir := filepath.Join(base, "migration-"+h.ID)
		_ = os.RemoveAll(dir)
		_, st, err := stream.ReceiveParallel(ctx, r, dir, opts)
		if err == nil {
			a.received.put(h.ID, dir)
		}
		return st, "", err
	case streamSnapshot:
		if a.fault("refuse-snapshot-copies") {
			return stream.Stats{}, "", errors.New("this node refuses copies of snapshots (injected fault)")
		}
		arrived := a.node.ExpectSnapshot(h.ID, h.Clones, h.Template)
		st, err := a.receiveSnapshot(ctx, r, h.ID, base, opts)
		arrived(err == nil)
		return st, "", err
	case streamImage, streamDiscard:
		tmp, err := os.MkdirTemp(base, h.Kind+"-")
		if err != nil {
			return stream.Stats{}, "", err
		}
		dir := filepath.Join(tmp, "d")
		_, st, err := stream.ReceiveParallel(ctx, r, dir, opts)
		if err == nil && h.Kind == streamImage {
			err = a.storeImage(ctx, dir)
		}
		return st, tmp, err
	}
	return stream.Stats{}, "", fmt.Errorf("unknown stream kind %q", h.Kind)
}

// receiveSnapshot receives a copy of a snapshot; the node keeps it only if every file matches the
// snapshot's manifest. The stream checks every chunk it writes against the sum its sender took as it read
// it; those sums (and a file's whole sum where the sender listed one) are compared with the snapshot's
// manifest, which sums its files in pieces of the size the sender cuts them in, so the copy is not read or
// hashed a second time. A snapshot whose manifest sums whole files (version 1) has its chunked files hashed
// again against it.
func (a *Agent) receiveSnapshot(ctx context.Context, r []io.Reader, id, base string, opts stream.ReceiveOptions) (stream.Stats, error) {
	tmp, err := os.MkdirTemp(base, "snapshot-")
	if err != nil {
		return stream.Stats{}, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "d")
	var chunks receivedChunks
	opts.Chunk = chunks.add
	m, st, err := stream.ReceiveParallel(ctx, r, dir, opts)
	if err != nil {
		return st, err
	}
	return st, a.node.AcceptSnapshot(ctx, id, dir, chunks.sums(m))
}

// Layout of an image stream: image.json and layers/<hex>.tar for each layer the target lacked.
const imageRecordFile = "image.json"

// storeImage takes the layers and the record of an image stream into the node's image store.
func (a *Agent) storeImage(ctx context.Context, dir string) error {
	st := a.node.Images()
	ents, _ := os.ReadDir(filepath.Join(dir, "layers"))
	for _, e := range ents {
		hexID := strings.TrimSuffix(e.Name(), ".tar")
		f, err := os.Open(filepath.Join(dir, "layers", e.Name()))
		if err != nil {
			return err
		}
		err = st.ReceiveLayer(ctx, "sha256:"+hexID, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, imageRecordFile))
	if err != nil {
		return err
	}
	var img images.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return fmt.Errorf("image record: %w", err)
	}
	if err := st.PutImage(&img); err != nil {
		return err
	}
	a.log.Info("image received", "image", img.Name, "layers_sent", len(ents), "layers", len(img.Layers))
	return nil
}

// pushImage sends image name (the layers target lacks, and the record) to the agent at targetAddr.
func (a *Agent) pushImage(ctx context.Context, name, targetAddr string, have map[string]bool) (stream.Stats, error) {
	img, err := a.node.Images().Get(name)
	if err != nil {
		return stream.Stats{}, err
	}
	base := filepath.Join(a.cfg.DataDir, "incoming")
	if err := os.MkdirAll(base, 0o700); err != nil {
		return stream.Stats{}, err
	}
	tmp, err := os.MkdirTemp(base, "push-")
	if err != nil {
		return stream.Stats{}, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(filepath.Join(tmp, "layers"), 0o700); err != nil {
		return stream.Stats{}, err
	}
	for _, id := range img.Layers {
		if have[id] {
			continue
		}
		if err := writeLayerTar(ctx, a.node.Images(), id, filepath.Join(tmp, "layers", strings.TrimPrefix(id, "sha256:")+".tar")); err != nil {
			return stream.Stats{}, err
		}
	}
	b, _ := json.Marshal(img)
	if err := os.WriteFile(filepath.Join(tmp, imageRecordFile), b, 0o600); err != nil {
		return stream.Stats{}, err
	}
	return a.sendDir(ctx, targetAddr, streamHeader{Kind: streamImage, ID: name}, tmp, 0, nil)
}

func writeLayerTar(ctx context.Context, st *images.Store, id, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := st.WriteLayer(ctx, id, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
