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
}

// TokenResponse carries a join token.
type TokenResponse struct {
	Token string `json:"token"`
}
