package stream

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// SendParallel sends the files of dir listed in m over len(ws) streams at
// once. Files larger than opts.ChunkSize are cut into chunks of that size at
// fixed offsets, so one big pages file spreads over every stream; each stream
// takes the next chunk when it is free, so a faster channel carries more.
// Every stream carries the manifest and a random transfer id, is checked on
// its own, and is useless without the others: ReceiveParallel must get all of
// them. Compression workers are shared by the streams.
func SendParallel(ctx context.Context, ws []io.Writer, dir string, m *Manifest, opts SendOptions) (Stats, error) {
	if err := opts.Validate(); err != nil {
		return Stats{}, err
	}
	chunk := opts.withDefaults().ChunkSize
	if len(ws) == 1 {
		chunk = 0
	}
	return send(ctx, ws, dir, m, opts, chunk)
}

// ReceiveParallel receives a transfer sent by SendParallel (or Send, with one
// reader) into dir, like Receive: the files are staged, written with WriteAt
// wherever their chunks arrive from, each file's SHA-256 is checked over the
// whole file once all its chunks are in, and dir appears only when every
// stream ended with its trailer and every file checked. The streams must all
// belong to one transfer (same id, manifest and stream count, each index once).
func ReceiveParallel(ctx context.Context, rs []io.Reader, dir string, opts ReceiveOptions) (*Manifest, Stats, error) {
	return receive(ctx, rs, dir, opts)
}

// numChunks is how many chunks a file of size bytes is cut into; 0 means whole files.
func numChunks(size, chunk int64) int64 {
	if chunk == 0 || size <= chunk {
		return 1
	}
	return (size + chunk - 1) / chunk
}

// chunkPlan hands out the chunks of a send, in manifest order, to whichever
// stream asks next, and counts the chunks of each file still to be sent.
type chunkPlan struct {
	m       *Manifest
	chunk   int64
	mu      sync.Mutex
	file    int
	off     int64
	pending []atomic.Int64
}

func planChunks(m *Manifest, chunk int64) *chunkPlan {
	p := &chunkPlan{m: m, chunk: chunk, pending: make([]atomic.Int64, len(m.Entries))}
	for i, e := range m.Entries {
		p.pending[i].Store(numChunks(e.Size, chunk))
	}
	return p
}

// take returns the next chunk to send, or false when all are taken.
func (p *chunkPlan) take() (chunkHdr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file >= len(p.m.Entries) {
		return chunkHdr{}, false
	}
	size := p.m.Entries[p.file].Size
	n := size - p.off
	if p.chunk > 0 && n > p.chunk {
		n = p.chunk
	}
	c := chunkHdr{File: uint32(p.file), Offset: uint64(p.off), Length: uint64(n)}
	p.off += n
	if p.off >= size {
		p.file, p.off = p.file+1, 0
	}
	return c, true
}

// chunkSent records a chunk as written and reports whether it was the file's last.
func (p *chunkPlan) chunkSent(file int) bool {
	return p.pending[file].Add(-1) == 0
}

// group runs functions and keeps the first error; it cancels the rest.
type group struct {
	wg     sync.WaitGroup
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func (g *group) goFn(fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.once.Do(func() { g.err = err; g.cancel() })
		}
	}()
}

func (g *group) wait() error {
	g.wg.Wait()
	return g.err
}

func checkStreamCount(n int) error {
	if n < 1 || n > MaxStreams {
		return fmt.Errorf("%d streams, want 1..%d", n, MaxStreams)
	}
	return nil
}
