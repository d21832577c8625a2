package stripe

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// recvFrame is one frame read from a lane, checked, with its raw bytes; or the lane's end or error.
type recvFrame struct {
	seq  uint64
	crc  uint32
	raw  []byte
	end  bool
	err  error
	free chan *recvFrame // where the merger returns it
}

// Receive reads the frames that Send sent over lanes (in the same order) and writes the stream to dst in
// order. It returns the stream's sum once every lane brought its end frame. It does not close the lanes.
// On error it returns at once; closing the lanes ends its goroutines.
func Receive(ctx context.Context, lanes []io.Reader, dst io.Writer, opts Options) (Sum, error) {
	if err := opts.Validate(); err != nil {
		return Sum{}, err
	}
	if err := checkLanes(len(lanes)); err != nil {
		return Sum{}, err
	}
	o := opts.withDefaults()
	n := len(lanes)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(n), zstd.WithDecoderMaxMemory(MaxFrameSize),
		zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		return Sum{}, err
	}
	r := &receiver{dec: dec, n: n, stop: make(chan struct{}), failed: make(chan struct{})}
	outs := make([]chan *recvFrame, n)
	var wg sync.WaitGroup
	for i := range lanes {
		outs[i] = make(chan *recvFrame, o.Depth)
		free := make(chan *recvFrame, o.Depth+1)
		for range o.Depth + 1 {
			free <- &recvFrame{free: free}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.readLane(lanes[i], i, outs[i], free)
		}()
	}
	sum, err := r.merge(ctx, outs, dst)
	r.once.Do(func() { close(r.stop) })
	if err != nil {
		return Sum{}, err
	}
	wg.Wait()
	dec.Close()
	sum.Wire = r.wire.Load()
	return sum, nil
}

type receiver struct {
	dec  *zstd.Decoder
	n    int
	wire atomic.Int64
	once sync.Once
	stop chan struct{}

	failOnce sync.Once
	failed   chan struct{} // closed when a lane failed; err says why
	err      error
}

// failLane records the first lane's error and wakes the merger, whichever lane it waits for.
func (r *receiver) failLane(err error) {
	r.failOnce.Do(func() { r.err = err; close(r.failed) })
}

// readLane reads lane i's frames (sequence numbers i, i+n, ...), checks and decodes them, and passes them on.
func (r *receiver) readLane(lane io.Reader, i int, out chan<- *recvFrame, free chan *recvFrame) {
	hb := make([]byte, headerSize)
	var wire []byte
	want := uint64(i)
	put := func(f *recvFrame) bool {
		if f.err != nil {
			r.failLane(f.err)
			return false
		}
		select {
		case out <- f:
			return true
		case <-r.stop:
			return false
		}
	}
	for {
		h, err := readHeader(lane, hb, i)
		if err == nil && h.kind != kindEnd && h.seq != want {
			err = fmt.Errorf("%w: lane %d: frame %d where %d belongs", ErrCorrupt, i, h.seq, want)
		}
		if err != nil {
			put(&recvFrame{err: err})
			return
		}
		r.wire.Add(headerSize + int64(h.wireLen))
		if h.kind == kindEnd {
			put(&recvFrame{seq: h.seq, end: true})
			return
		}
		var f *recvFrame
		select {
		case f = <-free:
		case <-r.stop:
			return
		}
		if cap(wire) < int(h.wireLen) {
			wire = make([]byte, h.wireLen)
		}
		if _, err := io.ReadFull(lane, wire[:h.wireLen]); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				err = fmt.Errorf("%w: lane %d ends inside frame %d", ErrCorrupt, i, h.seq)
			} else {
				err = fmt.Errorf("lane %d: frame %d: %w", i, h.seq, err)
			}
			put(&recvFrame{err: err})
			return
		}
		if cap(f.raw) < int(h.rawLen) {
			f.raw = make([]byte, 0, max(int(h.rawLen), DefaultFrameSize))
		}
		raw := f.raw[:0]
		if h.kind == kindZstd {
			raw, err = r.dec.DecodeAll(wire[:h.wireLen], raw)
			if err == nil && len(raw) != int(h.rawLen) {
				err = fmt.Errorf("%d bytes where the header says %d", len(raw), h.rawLen)
			}
			if err != nil {
				put(&recvFrame{err: fmt.Errorf("%w: frame %d (lane %d) does not decompress: %v", ErrCorrupt, h.seq, i, err)})
				return
			}
		} else {
			raw = append(raw, wire[:h.wireLen]...)
		}
		if crc32.Checksum(raw, castagnoli) != h.crc {
			put(&recvFrame{err: fmt.Errorf("%w: frame %d (lane %d) fails its CRC32C check", ErrCorrupt, h.seq, i)})
			return
		}
		f.seq, f.crc, f.raw, f.end, f.err = h.seq, h.crc, raw, false, nil
		if !put(f) {
			return
		}
		want += uint64(r.n)
	}
}

// merge writes the frames to dst in sequence order and builds the stream's digest.
func (r *receiver) merge(ctx context.Context, outs []chan *recvFrame, dst io.Writer) (Sum, error) {
	d := newDigest()
	var bytes int64
	n := uint64(len(outs))
	next := func(i uint64) (*recvFrame, error) {
		select {
		case f := <-outs[i]:
			if f.err != nil {
				return nil, f.err
			}
			return f, nil
		case <-r.failed:
			return nil, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for k := uint64(0); ; k++ {
		f, err := next(k % n)
		if err != nil {
			return Sum{}, err
		}
		if f.end {
			if f.seq != k {
				return Sum{}, fmt.Errorf("%w: the stream ends after %d frames, %d arrived", ErrCorrupt, f.seq, k)
			}
			for j := uint64(1); j < n; j++ {
				g, err := next((k + j) % n)
				if err != nil {
					return Sum{}, err
				}
				if !g.end || g.seq != k {
					return Sum{}, fmt.Errorf("%w: lane %d goes on after the end", ErrCorrupt, (k+j)%n)
				}
			}
			return Sum{Digest: d.String(), Bytes: bytes}, nil
		}
		d.add(f.seq, len(f.raw), f.crc)
		if _, err := dst.Write(f.raw); err != nil {
			return Sum{}, err
		}
		bytes += int64(len(f.raw))
		f.free <- f
	}
}
