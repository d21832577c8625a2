package stream

import "fmt"

// Limits bound what a manifest and a stream may ask of the receiver (and what
// BuildManifest and Send accept). Nothing received is trusted: every count and
// length read from the wire is checked against these before memory or disk is
// spent on it.
//
// A zero field means the default from DefaultLimits; a negative one is refused
// by Validate.
type Limits struct {
	// MaxEntries is the most files one manifest may list. Zero: 100000.
	MaxEntries int
	// MaxFileSize is the largest size of one file, in bytes. Zero: 1 TiB.
	MaxFileSize int64
	// MaxTotalSize is the largest sum of all file sizes. Zero: 4 TiB.
	MaxTotalSize int64
	// MaxPathLen is the longest relative path, in bytes. Zero: 1024.
	MaxPathLen int
	// MaxManifestBytes is the largest encoded manifest. Zero: 32 MiB.
	MaxManifestBytes int
	// MaxFrameSize is the largest data-frame payload, raw or compressed, in
	// bytes. Zero: 4 MiB. SendOptions.FrameSize must not exceed it.
	MaxFrameSize int
}

// Default bounds, used for zero fields of Limits.
const (
	DefaultMaxEntries       = 100_000
	DefaultMaxFileSize      = int64(1) << 40
	DefaultMaxTotalSize     = int64(4) << 40
	DefaultMaxPathLen       = 1024
	DefaultMaxManifestBytes = 32 << 20
	DefaultMaxFrameSize     = 4 << 20
)

// DefaultLimits returns the bounds used when a Limits field is zero.
func DefaultLimits() Limits {
	return Limits{
		MaxEntries:       DefaultMaxEntries,
		MaxFileSize:      DefaultMaxFileSize,
		MaxTotalSize:     DefaultMaxTotalSize,
		MaxPathLen:       DefaultMaxPathLen,
		MaxManifestBytes: DefaultMaxManifestBytes,
		MaxFrameSize:     DefaultMaxFrameSize,
	}
}

// Validate refuses negative bounds and bounds that contradict each other.
func (l Limits) Validate() error {
	if l.MaxEntries < 0 || l.MaxFileSize < 0 || l.MaxTotalSize < 0 ||
		l.MaxPathLen < 0 || l.MaxManifestBytes < 0 || l.MaxFrameSize < 0 {
		return fmt.Errorf("limits: negative bound in %+v; use 0 for the default", l)
	}
	f := l.withDefaults()
	if f.MaxFileSize > f.MaxTotalSize {
		return fmt.Errorf("limits: MaxFileSize %d exceeds MaxTotalSize %d", f.MaxFileSize, f.MaxTotalSize)
	}
	if f.MaxFrameSize < minFrameSize || f.MaxFrameSize > hardMaxFrameSize {
		return fmt.Errorf("limits: MaxFrameSize %d outside [%d, %d]", f.MaxFrameSize, minFrameSize, hardMaxFrameSize)
	}
	return nil
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxEntries == 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxFileSize == 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxTotalSize == 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxPathLen == 0 {
		l.MaxPathLen = d.MaxPathLen
	}
	if l.MaxManifestBytes == 0 {
		l.MaxManifestBytes = d.MaxManifestBytes
	}
	if l.MaxFrameSize == 0 {
		l.MaxFrameSize = d.MaxFrameSize
	}
	return l
}
