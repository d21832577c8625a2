package runtime

import "errors"

// Errors returned by this package; test them with errors.Is.
var (
	// ErrRunc wraps a failure reported by runc; the message carries runc's own last error line.
	ErrRunc = errors.New("runc failed")
	// ErrShim means the per-container shim could not start the container or died before saying so.
	ErrShim = errors.New("container shim failed")
	// ErrNotFound means runc does not know the container.
	ErrNotFound = errors.New("container not known to runc")
)
