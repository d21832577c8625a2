package stripe

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// sendFrame is one frame on its way: read, then encoded by a worker (done closed), then written by its lane.
type sendFrame struct {
	seq  uint64
	crc  uint32 // CRC32C of raw, taken as it was read
	off  int64
	raw  []byte // FrameSize capacity
	wire []byte // header + payload
	done chan struct{}
}

// errStopped is how goroutines learn that another one failed; never returned.
var errStopped = errors.New("stopped")

// Send reads src until EOF and sends it over lanes, frame k on lane k mod len(lanes), then an end frame on
// every lane. It returns the stream's sum. It does not close or half-close the lanes. On error it returns
// at once; closing src and the lanes ends its goroutines.
func Send(ctx context.Context, src io.Reader, lanes []io.Writer, opts Options) (Sum, error) {
	if err := opts.Validate(); err != nil {
		return Sum{}, err
	}
	if err := checkLanes(len(lanes)); err != nil {
		return Sum{}, err
	}
	o := opts.withDefaults()
	var enc *zstd.Encoder
	if o.Compress {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(o.Workers),
			zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
		if err != nil {
			return Sum{}, err
		}
	}
	s := &sender{o: o, enc: enc, stop: make(chan struct{})}
	n := len(lanes)
	total := n*o.Depth + o.Workers
	s.free = make(chan *sendFrame, total)
	for range total {
		s.free <- &sendFrame{raw: make([]byte, o.FrameSize), wire: make([]byte, 0, headerSize+o.FrameSize+o.FrameSize/64+1024)}
	}
	s.work = make(chan *sendFrame, total)
	queues := make([]chan *sendFrame, n)
	var writers sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan *sendFrame, total)
		writers.Add(1)
		go func() {
			defer writers.Done()
			s.writeLane(lanes[i], queues[i])
		}()
	}
	var workers sync.WaitGroup
	for range o.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			s.encode()
		}()
	}
	d := newDigest()
	readErr := make(chan error, 1)
	var frames uint64
	var bytes int64
	go func() {
		defer close(s.work)
		defer func() {
			for _, q := range queues {
				close(q)
			}
		}()
		for {
			var f *sendFrame
			select {
			case f = <-s.free:
			case <-s.stop:
				readErr <- errStopped
				return
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
			m, err := src.Read(f.raw[:o.FrameSize])
			if m > 0 {
				f.raw = f.raw[:m]
				f.crc = crc32.Checksum(f.raw, castagnoli)
				d.add(frames, m, f.crc)
				f.seq, f.off, f.done = frames, bytes, make(chan struct{})
				frames++
				bytes += int64(m)
				s.work <- f
				queues[f.seq%uint64(n)] <- f
			} else {
				s.free <- f
			}
			if err == io.EOF {
				for _, q := range queues {
					select {
					case q <- endFrame(frames):
					case <-s.stop:
						readErr <- errStopped
						return
					}
				}
				readErr <- nil
				return
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	var err error
	select {
	case err = <-readErr:
	case <-s.stop:
	}
	if err == nil || errors.Is(err, errStopped) {
		done := make(chan struct{})
		go func() { writers.Wait(); close(done) }()
		select {
		case <-done:
		case <-s.stop:
		case <-ctx.Done():
			s.fail(ctx.Err())
		}
	}
	if ferr := s.failure(); ferr != nil {
		err = ferr
	} else if errors.Is(err, errStopped) {
		err = nil
	}
	if err != nil {
		s.fail(err)
		return Sum{}, err
	}
	workers.Wait()
	if enc != nil {
		enc.Close()
	}
	return Sum{Digest: d.String(), Bytes: bytes, Wire: s.wire.Load()}, nil
}

type sender struct {
	o    Options
	enc  *zstd.Encoder
	free chan *sendFrame
	work chan *sendFrame
	wire atomic.Int64

	stopOnce sync.Once
	stop     chan struct{}
	errMu    sync.Mutex
	err      error
}

func (s *sender) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
}

func (s *sender) failure() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func endFrame(frames uint64) *sendFrame {
	f := &sendFrame{seq: frames, wire: make([]byte, headerSize), done: make(chan struct{})}
	header{kind: kindEnd, seq: frames}.put(f.wire)
	close(f.done)
	return f
}

// encode compresses each frame if that pays and builds its wire bytes.
func (s *sender) encode() {
	for f := range s.work {
		if s.o.Tamper != nil {
			s.o.Tamper(f.off, f.raw)
		}
		hd := header{kind: kindRaw, rawLen: uint32(len(f.raw)), crc: f.crc, seq: f.seq}
		w := f.wire[:headerSize]
		if s.enc != nil {
			w = s.enc.EncodeAll(f.raw, w)
			if len(w)-headerSize < len(f.raw)-len(f.raw)/32 {
				hd.kind = kindZstd
			} else {
				w = w[:headerSize]
			}
		}
		if hd.kind == kindRaw {
			w = append(w, f.raw...)
		}
		hd.wireLen = uint32(len(w) - headerSize)
		hd.put(w)
		f.wire = w
		close(f.done)
	}
}

// writeLane writes its queue's frames in order, each once it is encoded.
func (s *sender) writeLane(w io.Writer, q chan *sendFrame) {
	for f := range q {
		select {
		case <-f.done:
		case <-s.stop:
			return
		}
		if _, err := w.Write(f.wire); err != nil {
			s.fail(err)
			return
		}
		s.wire.Add(int64(len(f.wire)))
		if f.raw != nil {
			f.raw, f.wire = f.raw[:cap(f.raw)], f.wire[:0]
			s.free <- f
		}
	}
}
