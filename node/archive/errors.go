package archive

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with %w
// and name the tar entry concerned; test for them with errors.Is.
var (
	// ErrUnsafePath means an entry would write outside the destination
	// directory: its name escapes the root with "..", a hard link or a
	// relative symlink target escapes it, or a parent of the entry is a
	// symlink or not a directory. Nothing of that entry has been written.
	ErrUnsafePath = errors.New("unsafe path in archive")

	// ErrCorrupt means the tar stream is truncated or malformed (a bad
	// header, a short file body, a decompression error from below).
	ErrCorrupt = errors.New("corrupt or truncated archive")

	// ErrTooLarge means a bound of ExtractOptions (MaxBytes or MaxEntries)
	// was exceeded.
	ErrTooLarge = errors.New("archive exceeds a size bound")

	// ErrUnsupported means an entry has a type this package does not
	// restore (for example a tape volume header or a contiguous file).
	ErrUnsupported = errors.New("unsupported archive entry")
)
