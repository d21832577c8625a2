package criu

import "errors"

// Errors returned by this package; wrap-checked with errors.Is.
var (
	// ErrNotFound means no criu binary was found on PATH.
	ErrNotFound = errors.New("criu not found on PATH; run scripts/install-deps.sh")
	// ErrTooOld means the criu found is older than MinVersion.
	ErrTooOld = errors.New("criu is too old; ferry needs CRIU 4.2 or newer (run scripts/install-deps.sh)")
	// ErrCheckFailed means `criu check` did not pass on this host.
	ErrCheckFailed = errors.New("criu check failed on this host")
	// ErrNoStats means CRIU left no statistics file where one was expected.
	ErrNoStats = errors.New("no CRIU statistics file")
)
