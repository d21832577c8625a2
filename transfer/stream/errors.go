package stream

import "errors"

// Sentinel errors. Every error returned by this package that concerns the
// data wraps one of these with %w, so callers test them with errors.Is; the
// message around it names the file (or frame) and says what to do.
var (
	// ErrCorrupt reports a frame that failed its CRC32C, a malformed frame,
	// a frame out of protocol order, or a stream header that is not Ferry's.
	ErrCorrupt = errors.New("stream corrupt")
	// ErrChecksum reports a file whose SHA-256 differs from its manifest entry.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrSize reports a file with more or fewer bytes than its manifest entry.
	ErrSize = errors.New("size mismatch")
	// ErrManifest reports a manifest that is malformed or breaks a rule
	// (duplicate path, bad digest, unknown version, ...).
	ErrManifest = errors.New("invalid manifest")
	// ErrTruncated reports a stream that ended before its trailer.
	ErrTruncated = errors.New("stream truncated")
	// ErrUnsafePath reports a path that is absolute, has a ".." component,
	// is not clean, or would escape the destination directory.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrTooLarge reports a size, count or length above a bound in Limits.
	ErrTooLarge = errors.New("too large")
	// ErrNotRegular reports a directory entry that is neither a regular file
	// nor a directory (symlink, device, socket, fifo) found by BuildManifest.
	ErrNotRegular = errors.New("not a regular file")
	// ErrAborted reports that the sending side gave up and said why in the stream.
	ErrAborted = errors.New("sender aborted the transfer")
)
