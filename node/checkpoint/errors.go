package checkpoint

import "errors"

// Errors returned by this package; test them with errors.Is.
var (
	// ErrCorrupt means a file of the checkpoint does not match its manifest (or is missing or extra).
	ErrCorrupt = errors.New("checkpoint is corrupt")
	// ErrNoManifest means the checkpoint has no readable manifest: it was never finished.
	ErrNoManifest = errors.New("checkpoint has no manifest")
	// ErrNotFound means no checkpoint with that ID exists.
	ErrNotFound = errors.New("checkpoint not found")
)
