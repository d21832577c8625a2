package stripe

import (
	"fmt"
	"runtime"
)

// Defaults for zero Options fields.
const (
	DefaultFrameSize = 1 << 20
	DefaultDepth     = 2
	// MaxLanes bounds the number of lanes of one stream.
	MaxLanes = 64
)

// Options configure Send and Receive. Zero fields mean the defaults.
type Options struct {
	// FrameSize is the most raw bytes one frame carries (one read of the source). Zero: DefaultFrameSize.
	FrameSize int
	// Depth is the number of frames in flight per lane; memory is about 2*Depth*FrameSize per lane on
	// each side. Zero: DefaultDepth.
	Depth int
	// Compress makes the sender try zstd (fastest level) on every frame, keeping it only where it is
	// smaller. The receiver accepts both either way.
	Compress bool
	// Workers compress frames on the sender. Zero: runtime.GOMAXPROCS(0).
	Workers int
	// Tamper, when set, is called with each frame's raw bytes and stream offset after their CRC32C was taken
	// and before they are encoded: fault injection for tests of the receiver's checks.
	Tamper func(off int64, raw []byte)
}

// DefaultOptions returns the defaults spelled out.
func DefaultOptions() Options {
	return Options{FrameSize: DefaultFrameSize, Depth: DefaultDepth, Compress: true, Workers: runtime.GOMAXPROCS(0)}
}

// Validate checks the fields.
func (o Options) Validate() error {
	if o.FrameSize < 0 || o.FrameSize > MaxFrameSize {
		return fmt.Errorf("stripe: frame size %d, want 0..%d", o.FrameSize, MaxFrameSize)
	}
	if o.Depth < 0 || o.Depth > 64 {
		return fmt.Errorf("stripe: depth %d, want 0..64", o.Depth)
	}
	if o.Workers < 0 || o.Workers > 256 {
		return fmt.Errorf("stripe: workers %d, want 0..256", o.Workers)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.FrameSize == 0 {
		o.FrameSize = DefaultFrameSize
	}
	if o.Depth == 0 {
		o.Depth = DefaultDepth
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o
}

func checkLanes(n int) error {
	if n < 1 || n > MaxLanes {
		return fmt.Errorf("stripe: %d lanes, want 1..%d", n, MaxLanes)
	}
	return nil
}

// Sum is what went through a stream: its digest (see digest), the size of its raw bytes, and the bytes on
// the lanes.
type Sum struct {
	Digest string
	Bytes  int64
	Wire   int64
}
