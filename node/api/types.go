package api

import (
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/images"
)

// Headers between agents.
const (
	// HeaderLocal asks the receiving agent to execute the request on its own node instead of routing it
	// through the cluster. Honoured only from other agents and the root-only local socket.
	HeaderLocal = "X-Ferry-Local"
)

// ContainerView is a container as the cluster sees it: its placement and desired state from the cluster's
// state, and what its node reports. Reachable is false when the node did not answer (Container then holds
// only the recorded configuration).
type ContainerView struct {
	node.Container
	Node      string `json:"node"`
	Desired   string `json:"desired,omitempty"`
	Reachable bool   `json:"reachable"`
}

// NodeView is one node in `ferry node ls`.
type NodeView struct {
	Name        string    `json:"name"`
	Addr        string    `json:"addr"`
	Status      string    `json:"status"`    // alive, suspect, dead, left
	RaftRole    string    `json:"raft_role"` // leader, voter, nonvoter, or none
	Eligible    bool      `json:"eligible"`
	Maintenance bool      `json:"maintenance,omitempty"`
	Containers  int       `json:"containers"`
	FreeMemory  int64     `json:"free_memory"`
	Capacity    int64     `json:"capacity_memory"`
	Features    []string  `json:"features,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ImageView is an image and the nodes that hold it.
type ImageView struct {
	images.Image
	Nodes []string `json:"nodes"`
}

// RunRequest is node.RunRequest plus the cluster's placement: Node pins the container to a node.
type RunRequest struct {
	node.RunRequest
	Node string `json:"node,omitempty"`
	// SnapshotEvery, when set, has the cluster snapshot the container that often while it runs, keeping the
	// Keep newest of those snapshots.
	SnapshotEvery time.Duration `json:"snapshot_every,omitempty"`
	Keep          int           `json:"keep,omitempty"`
	// NoMigrate keeps the container on its node: migrations refuse it and a drain leaves it (and says so).
	NoMigrate bool `json:"no_migrate,omitempty"`
}

// TokenResponse carries a join token.
type TokenResponse struct {
	Token string `json:"token"`
}

// OperatorView is an operator's key and role, as `ferry operator ls` shows it.
type OperatorView struct {
	ID        string `json:"id"` // SHA256 fingerprint of the key
	Name      string `json:"name"`
	Role      string `json:"role"`       // controller or viewer
	PublicKey string `json:"public_key"` // authorized_keys form
}

// AddOperatorRequest adds one operator key. PublicKey is one key in authorized_keys form; its comment is the
// name unless Name is set.
type AddOperatorRequest struct {
	PublicKey string `json:"public_key"`
	Name      string `json:"name,omitempty"`
	Role      string `json:"role"`
}

// RemoveOperatorResponse says which operator was removed and how many of its open SSH connections the agents
// closed.
type RemoveOperatorResponse struct {
	Operator     OperatorView `json:"operator"`
	Disconnected int          `json:"disconnected"`
}

// CAResponse is the cluster CA's public key (authorized_keys form) and fingerprint.
type CAResponse struct {
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
}

// MigrateRequest asks the cluster to move a container.
type MigrateRequest struct {
	Container string `json:"container"`
	Source    string `json:"source,omitempty"` // if given, must be where the container runs
	Target    string `json:"target"`
	Mode      string `json:"mode,omitempty"` // auto (default), stop-copy, pre-copy, post-copy
}
