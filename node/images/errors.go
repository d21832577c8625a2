package images

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with %w
// (some also wrap an archive error, such as archive.ErrUnsafePath); test for
// them with errors.Is.
var (
	// ErrUnknownImage means no image of that name is in the store.
	ErrUnknownImage = errors.New("unknown image")

	// ErrBadArchive means an image source was refused: an unsafe or corrupt
	// tar, a digest or size that does not match its descriptor, a missing
	// or malformed manifest, index or config. Nothing of it is kept.
	ErrBadArchive = errors.New("bad image archive")

	// ErrInvalidName means an image name does not have the form
	// [a-z0-9][a-z0-9._-]{0,62} with an optional :TAG.
	ErrInvalidName = errors.New("invalid image name")

	// ErrMissingLayer means an image record names a layer whose directory
	// is not in the store (it was removed by hand, or the store is damaged).
	ErrMissingLayer = errors.New("image layer missing from the store")
)
