package migrate

import "errors"

// Errors of a migration; test with errors.Is.
var (
	// ErrMode means the requested mode is not possible between these nodes (a probe said so).
	ErrMode = errors.New("migration mode not available")
	// ErrRolledBack means the migration failed and the container went on on its source.
	ErrRolledBack = errors.New("migration rolled back")
	// ErrIntegrity means what reached the target did not match what the source sent.
	ErrIntegrity = errors.New("migration data did not arrive intact")
)
