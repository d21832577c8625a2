package stream

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultProgressInterval is how often a Progress callback is called when the
// options leave the interval at zero.
const DefaultProgressInterval = 100 * time.Millisecond

type int64Counter = atomic.Int64

// Progress is a snapshot of a transfer, passed to the Progress callback.
type Progress struct {
	// RawDone is file bytes read (send) or written (receive) so far.
	RawDone int64
	// WireDone is stream bytes written or read so far, all streams together.
	WireDone int64
	// RawTotal is the manifest's total size (0 on receive until a manifest arrived).
	RawTotal int64
	// FilesDone counts files fully sent, or received and verified.
	FilesDone int
	// FilesTotal is the number of files in the manifest.
	FilesTotal int
	// File is a file being transferred now (one of them, with several streams).
	File string
	// Elapsed is the time since the transfer started.
	Elapsed time.Duration
	// Rate is RawDone per second of Elapsed.
	Rate float64
	// Done is set on the last call, made once the transfer ended (well or not).
	Done bool
}

// Stats summarise a finished (or failed) transfer.
type Stats struct {
	// RawBytes is the file bytes carried.
	RawBytes int64
	// WireBytes is the stream bytes, all streams together.
	WireBytes int64
	// Files is the number of files carried.
	Files int
	// Streams is the number of streams used.
	Streams int
	// Duration is the time from start to end.
	Duration time.Duration
}

// Ratio returns WireBytes/RawBytes (1 when nothing was sent).
func (s Stats) Ratio() float64 {
	if s.RawBytes == 0 {
		return 1
	}
	return float64(s.WireBytes) / float64(s.RawBytes)
}

// tracker keeps the counters of one transfer and calls the progress callback
// from a single goroutine, at most once per interval, and once more at the end.
type tracker struct {
	raw, wire  int64Counter
	files      atomic.Int64
	rawTotal   atomic.Int64
	filesTotal atomic.Int64
	streams    int
	start      time.Time
	mu         sync.Mutex
	file       string
	fn         func(Progress)
	interval   time.Duration
	stop       chan struct{}
	stopped    chan struct{}
}

func newTracker(fn func(Progress), interval time.Duration, streams int) *tracker {
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	return &tracker{fn: fn, interval: interval, streams: streams, start: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{})}
}

func (t *tracker) setFile(name string) {
	t.mu.Lock()
	t.file = name
	t.mu.Unlock()
}

func (t *tracker) snapshot(done bool) Progress {
	t.mu.Lock()
	f := t.file
	t.mu.Unlock()
	el := time.Since(t.start)
	p := Progress{RawDone: t.raw.Load(), WireDone: t.wire.Load(), RawTotal: t.rawTotal.Load(),
		FilesDone: int(t.files.Load()), FilesTotal: int(t.filesTotal.Load()), File: f, Elapsed: el, Done: done}
	if s := el.Seconds(); s > 0 {
		p.Rate = float64(p.RawDone) / s
	}
	return p
}

func (t *tracker) stats() Stats {
	return Stats{RawBytes: t.raw.Load(), WireBytes: t.wire.Load(), Files: int(t.files.Load()),
		Streams: t.streams, Duration: time.Since(t.start)}
}

// run calls the callback every interval until finish; start it with go.
func (t *tracker) run(ctx context.Context) {
	defer close(t.stopped)
	if t.fn == nil {
		<-t.stop
		return
	}
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.fn(t.snapshot(false))
		case <-t.stop:
			t.fn(t.snapshot(true))
			return
		case <-ctx.Done():
			<-t.stop
			t.fn(t.snapshot(true))
			return
		}
	}
}

// finish stops run after its final call and returns the stats.
func (t *tracker) finish() Stats {
	close(t.stop)
	<-t.stopped
	return t.stats()
}
