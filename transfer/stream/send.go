package stream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Compression selects how data frames are compressed.
type Compression int

const (
	// CompressionAuto (the zero value) is DefaultCompression.
	CompressionAuto Compression = iota
	// CompressionNone stores every data frame as is.
	CompressionNone
	// CompressionFastest is zstd's SpeedFastest (about zstd level 1).
	CompressionFastest
	// CompressionDefault is zstd's SpeedDefault (about zstd level 3).
	CompressionDefault
	// CompressionBetter is zstd's SpeedBetterCompression (about zstd level 7).
	CompressionBetter
)

// DefaultCompression is the level used for CompressionAuto.
//
// It is CompressionFastest, chosen with BenchmarkSend on 256 MiB of half
// text-like, half random data on 2 cores (see doc.go for the figures):
// SpeedFastest compresses as fast as the stream can be written while the
// text-like half still shrinks about 4x; SpeedDefault gains little on CRIU
// pages and costs markedly more CPU, which a migration spends while the
// container is frozen. Random pages are stored (frData), whatever the level.
const DefaultCompression = CompressionFastest

func (c Compression) String() string {
	switch c {
	case CompressionAuto:
		return "auto"
	case CompressionNone:
		return "none"
	case CompressionFastest:
		return "fastest"
	case CompressionDefault:
		return "default"
	case CompressionBetter:
		return "better"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Defaults for zero SendOptions fields.
const (
	DefaultFrameSize = 1 << 20
	DefaultChunkSize = 8 << 20
	// MaxStreams bounds the number of parallel streams of one transfer.
	MaxStreams = 256
)

// SendOptions configure Send and SendParallel. Every zero field means the
// documented default, so SendOptions{} works; DefaultSendOptions spells the
// defaults out.
type SendOptions struct {
	// Compression of data frames. Zero: DefaultCompression.
	Compression Compression
	// FrameSize is the raw bytes per data frame, compressed on its own.
	// Zero: DefaultFrameSize (1 MiB). At most Limits.MaxFrameSize.
	FrameSize int
	// ChunkSize is the unit SendParallel splits large files into, so one
	// big pages file spreads over all streams. Zero: DefaultChunkSize
	// (8 MiB). Send ignores it and sends each file whole.
	ChunkSize int64
	// Workers is the number of compression goroutines, shared by all
	// streams of one call. Zero: runtime.GOMAXPROCS(0).
	Workers int
	// Depth is the number of frames in flight per stream (read, being
	// compressed, or waiting to be written); it bounds memory to about
	// 2*Depth*FrameSize per stream. Zero: Workers+2.
	Depth int
	// Progress, when not nil, is called from one goroutine at most every
	// ProgressInterval, and once more with Done set at the end.
	Progress func(Progress)
	// ProgressInterval. Zero: DefaultProgressInterval (100 ms).
	ProgressInterval time.Duration
	// Limits the manifest is validated against before sending. Zero fields: defaults.
	Limits Limits
	// Logger receives debug and warning records. Nil: discard.
	Logger *slog.Logger
}

// DefaultSendOptions returns the options used for zero fields.
func DefaultSendOptions() SendOptions {
	w := runtime.GOMAXPROCS(0)
	return SendOptions{
		Compression:      DefaultCompression,
		FrameSize:        DefaultFrameSize,
		ChunkSize:        DefaultChunkSize,
		Workers:          w,
		Depth:            w + 2,
		ProgressInterval: DefaultProgressInterval,
		Limits:           DefaultLimits(),
		Logger:           slog.New(slog.DiscardHandler),
	}
}

// Validate checks the fields against each other, naming both values.
func (o SendOptions) Validate() error {
	if err := o.Limits.Validate(); err != nil {
		return fmt.Errorf("send options: %w", err)
	}
	if o.Compression < CompressionAuto || o.Compression > CompressionBetter {
		return fmt.Errorf("send options: unknown Compression %d", int(o.Compression))
	}
	lim := o.Limits.withDefaults()
	if o.FrameSize != 0 && (o.FrameSize < minFrameSize || o.FrameSize > lim.MaxFrameSize) {
		return fmt.Errorf("send options: FrameSize %d outside [%d, Limits.MaxFrameSize %d]", o.FrameSize, minFrameSize, lim.MaxFrameSize)
	}
	fs := o.withDefaults().FrameSize
	if o.ChunkSize != 0 && (o.ChunkSize < minChunkSize || o.ChunkSize%int64(fs) != 0) {
		return fmt.Errorf("send options: ChunkSize %d must be a multiple of FrameSize %d and at least %d",
			o.ChunkSize, fs, minChunkSize)
	}
	if o.Workers < 0 || o.Depth < 0 || o.ProgressInterval < 0 {
		return fmt.Errorf("send options: negative Workers %d, Depth %d or ProgressInterval %v", o.Workers, o.Depth, o.ProgressInterval)
	}
	return nil
}

func (o SendOptions) withDefaults() SendOptions {
	d := DefaultSendOptions()
	if o.Compression == CompressionAuto {
		o.Compression = d.Compression
	}
	if o.FrameSize == 0 {
		o.FrameSize = d.FrameSize
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = d.ChunkSize
		if o.ChunkSize%int64(o.FrameSize) != 0 {
			o.ChunkSize = int64(o.FrameSize) * (1 + minChunkSize/int64(o.FrameSize))
		}
	}
	if o.Workers == 0 {
		o.Workers = d.Workers
	}
	if o.Depth == 0 {
		o.Depth = o.Workers + 2
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = d.ProgressInterval
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// Send writes the files of dir listed in m to w as one stream (see doc.go for
// the format) and returns what it sent. Each file goes whole, in manifest
// order. m is validated first; a file whose size on disk differs from m is
// sent as read (the receiver refuses it) and Send returns ErrSize naming it.
//
// If ctx is cancelled Send returns ctx.Err() promptly; a Write to w blocked at
// that moment returns when the caller closes w. Send never closes w.
func Send(ctx context.Context, w io.Writer, dir string, m *Manifest, opts SendOptions) (Stats, error) {
	return send(ctx, []io.Writer{w}, dir, m, opts, 0)
}

// send is Send and SendParallel; chunk 0 means whole files.
func send(ctx context.Context, ws []io.Writer, dir string, m *Manifest, opts SendOptions, chunk int64) (Stats, error) {
	s, err := newSender(dir, m, opts, len(ws), chunk)
	if err != nil {
		return Stats{}, err
	}
	defer s.root.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.tr.run(ctx)
	s.startWorkers()
	errc := make(chan error, len(ws))
	for i, w := range ws {
		s.streams.Add(1)
		go func() {
			defer s.streams.Done()
			errc <- s.runStream(ctx, w, i)
		}()
	}
	go s.closeWhenDone()
	err = s.wait(ctx, cancel, errc, len(ws))
	return s.tr.finish(), err
}

// wait collects the streams' results; the first error cancels the others.
// It returns at once when the caller's ctx is done.
func (s *sender) wait(ctx context.Context, cancel context.CancelFunc, errc <-chan error, n int) error {
	var first error
	for range n {
		select {
		case err := <-errc:
			if err != nil && first == nil {
				first = err
				cancel()
			}
		case <-ctx.Done():
			if first == nil {
				first = ctx.Err()
			}
			return first
		}
	}
	return first
}

// sender is the state shared by the streams of one Send or SendParallel.
type sender struct {
	root     *os.Root
	m        *Manifest
	manifest []byte
	opts     SendOptions
	info     streamInfo
	plan     *chunkPlan
	enc      *zstd.Encoder
	jobs     chan *block
	tr       *tracker
	streams  sync.WaitGroup
	workers  sync.WaitGroup
	bufs     *bufList // raw frames, len and cap FrameSize
	outs     *bufList // zstd output, cap outCap()
}

// outCap bounds zstd's output for a full frame (input + 1/128 + headers),
// so EncodeAll never grows a pooled buffer, even on random data.
func (s *sender) outCap() int { return s.opts.FrameSize + s.opts.FrameSize>>7 + 1024 }

func newSender(dir string, m *Manifest, opts SendOptions, n int, chunk int64) (*sender, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if n < 1 || n > MaxStreams {
		return nil, fmt.Errorf("send: %d streams, want 1..%d", n, MaxStreams)
	}
	if err := m.Validate(opts.Limits); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	mj, err := m.Encode()
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("send: open source %w", err)
	}
	s := &sender{root: root, m: m, manifest: mj, opts: opts, plan: planChunks(m, chunk),
		tr: newTracker(opts.Progress, opts.ProgressInterval, n)}
	s.info = streamInfo{Count: uint16(n), ChunkSize: uint64(chunk), ManifestSum: sha256.Sum256(mj)}
	_, _ = rand.Read(s.info.Transfer[:])
	s.tr.rawTotal.Store(m.TotalSize())
	s.tr.filesTotal.Store(int64(len(m.Entries)))
	// Every block in flight holds a raw buffer (Depth per stream, one more being read by each producer)
	// and perhaps an output buffer; the lists keep that many for reuse.
	nbuf := n*(opts.Depth+1) + opts.Workers
	s.bufs = newBufList(nbuf, opts.FrameSize, opts.FrameSize)
	s.outs = newBufList(nbuf, 0, s.outCap())
	if err := s.newEncoder(); err != nil {
		root.Close()
		return nil, err
	}
	return s, nil
}

// newEncoder makes the shared zstd encoder; EncodeAll may be called from
// Workers goroutines at once.
func (s *sender) newEncoder() error {
	lvl := map[Compression]zstd.EncoderLevel{CompressionFastest: zstd.SpeedFastest,
		CompressionDefault: zstd.SpeedDefault, CompressionBetter: zstd.SpeedBetterCompression}
	l, ok := lvl[s.opts.Compression]
	if !ok {
		return nil
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(s.opts.Workers),
		zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return fmt.Errorf("send: zstd encoder: %w", err)
	}
	s.enc = enc
	return nil
}

// block is one frame on its way to the wire. Data blocks go through a
// compression worker, which closes done; control blocks are born done.
type block struct {
	typ     byte
	payload []byte  // control payload, or the raw data of a data block
	raw     *[]byte // pooled buffer behind payload, for data blocks
	out     *[]byte // pooled zstd output when it paid
	done    chan struct{}
	file    int // manifest index, for data and chunk-end blocks
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *sender) startWorkers() {
	s.jobs = make(chan *block, s.opts.Workers)
	if s.enc == nil {
		return
	}
	for range s.opts.Workers {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			for b := range s.jobs {
				s.compress(b)
				close(b.done)
			}
		}()
	}
}

// closeWhenDone stops the workers and the encoder once every stream is done.
func (s *sender) closeWhenDone() {
	s.streams.Wait()
	close(s.jobs)
	s.workers.Wait()
	if s.enc != nil {
		s.enc.Close()
	}
}

// compress replaces a data block's payload by its zstd encoding when that
// saves at least 1/64 of it; otherwise the frame is stored.
func (s *sender) compress(b *block) {
	out := s.outs.get()
	*out = s.enc.EncodeAll(b.payload, (*out)[:0])
	if len(*out)+4 < len(b.payload)-len(b.payload)/64 {
		b.out = out
		b.typ = frZstd
		return
	}
	s.putOut(out)
}

func (s *sender) putOut(out *[]byte) { s.outs.put(out) }

func (s *sender) putBlock(b *block) {
	if b.raw != nil {
		s.bufs.put(b.raw)
	}
	if b.out != nil {
		s.putOut(b.out)
	}
}

// zstdPrefix is the raw length that starts a frZstd payload.
func zstdPrefix(n int) []byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], uint32(n))
	return p[:]
}

// writeError marks an error of the writer itself, after which no abort frame is tried.
type writeError struct{ err error }

func (e writeError) Error() string { return "write stream: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

func isWriteError(err error) bool {
	var we writeError
	return errors.As(err, &we)
}
