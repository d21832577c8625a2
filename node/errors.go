package node

import "errors"

// Errors returned by the agent. The API maps them to status codes and the command line to exit codes; the
// messages a person sees wrap them with the container's name and the fix.
var (
	// ErrNotFound: no container (or checkpoint) of that name on this node.
	ErrNotFound = errors.New("not found")
	// ErrExists: a container of that name already exists.
	ErrExists = errors.New("already exists")
	// ErrInvalid: the request is malformed (bad name, bad size, empty command).
	ErrInvalid = errors.New("invalid request")
	// ErrState: the container is in a state that does not allow the operation (e.g. checkpointing a stopped one).
	ErrState = errors.New("wrong state")
	// ErrRejected: input from outside (an archive, a checkpoint) failed a check and was refused; nothing changed.
	ErrRejected = errors.New("rejected")
	// ErrUnavailable: this node cannot do it (e.g. CRIU is missing or failed its check).
	ErrUnavailable = errors.New("unavailable on this node")
)
