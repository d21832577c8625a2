package migrate

import (
	"context"
	"time"

	"github.com/ferryhq/ferry/node/criu"
)

// Nodes is how the migration reaches the source and target agents. The agent implements it with calls over
// SSH; each call is made by the one goroutine that runs the migration. A method's error means that step did
// not happen (or did not finish), and the caller rolls back.
type Nodes interface {
	// EnsureImage gets the container's image onto the target if it lacks it (layers it already has are not
	// sent again).
	EnsureImage(ctx context.Context, job Job) error
	// Prepare readies the target: it must not have the container, and (for page-server transfer) starts a
	// CRIU page server on its loopback.
	Prepare(ctx context.Context, job Job) error
	// Dump freezes the container on the source, dumps it with CRIU, sends the pages to the target's page
	// server through the tunnel while CRIU dumps, and streams the rest. The container stays frozen.
	Dump(ctx context.Context, job Job, progress func(Progress)) (*DumpResult, error)
	// Restore has the target check what arrived against the source's figures and restore the container.
	Restore(ctx context.Context, job Job, dump *DumpResult) (*RestoreResult, error)
	// Finish ends the source side: commit removes the frozen copy, roll-back thaws it.
	Finish(ctx context.Context, job Job, commit bool) error
	// Abort drops what the target received (the page server, the partial checkpoint).
	Abort(ctx context.Context, job Job) error
	// Running reports whether node runs the container (used to finish a job a previous leader left).
	Running(ctx context.Context, node, container string) (bool, error)
}

// Recorder records the job's state in the cluster's state (raft). Commit must move the container's
// placement to the target in the same write.
type Recorder interface {
	Record(ctx context.Context, job Job, state, errMsg string) error
}

// Job is one migration.
type Job struct {
	ID        string `json:"id"`
	Container string `json:"container"`
	Image     string `json:"image"`
	Source    string `json:"source"`
	Target    string `json:"target"`
	Mode      string `json:"mode"`
}

// DumpResult is what the source reports after the dump and the transfer.
type DumpResult struct {
	FrozenAt    time.Time       `json:"frozen_at"`
	DumpTook    time.Duration   `json:"dump_took"`
	PagesBytes  int64           `json:"pages_bytes"`  // through the page-server tunnel
	PagesWire   int64           `json:"pages_wire"`   // those bytes as sent (compressed) on the SSH channel
	PagesDigest string          `json:"pages_digest"` // of the pages as the source's CRIU sent them (see transfer/stripe)
	StreamRaw   int64           `json:"stream_raw"`   // the rest, before compression
	StreamWire  int64           `json:"stream_wire"`  // the rest, on the wire
	Files       int             `json:"files"`
	CRIU        *criu.DumpStats `json:"criu,omitempty"`
	// SentAt is when the target had everything (the pages and the rest).
	SentAt time.Time `json:"sent_at,omitzero"`
}

// RestoreResult is what the target reports once the container runs there.
type RestoreResult struct {
	// StartedAt is when the target began to restore (it had been asked to).
	StartedAt time.Time          `json:"started_at,omitzero"`
	RunningAt time.Time          `json:"running_at"`
	Took      time.Duration      `json:"took"`
	Pid       int                `json:"pid"`
	CRIU      *criu.RestoreStats `json:"criu,omitempty"`
}

// Progress is shown to a person while the migration runs.
type Progress struct {
	Phase   string        `json:"phase"`
	Bytes   int64         `json:"bytes,omitempty"`
	Rate    float64       `json:"rate,omitempty"` // bytes per second
	Elapsed time.Duration `json:"elapsed"`
}
