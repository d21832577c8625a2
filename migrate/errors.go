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
	// ErrUncertain marks a Recorder's error after which the cluster's state may or may not hold the write (a
	// timeout, a lost leadership, a forward whose answer was lost), as opposed to a write refused.
	ErrUncertain = errors.New("the cluster state may or may not have taken the write")
	// ErrUnsettled means the migration could be neither committed nor cleanly rolled back: its job stays open,
	// the source's copy stays frozen, and the leader's recovery (Recover) settles it.
	ErrUnsettled = errors.New("migration left open for the leader to settle")
)
