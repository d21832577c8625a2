package api

import (
	"context"
	"net/url"
	"time"

	"github.com/ferryhq/ferry/node"
)

// SnapshotView is a snapshot as `ferry snapshot ls` shows it: from the cluster's catalogue.
type SnapshotView struct {
	ID        string    `json:"id"`
	Container string    `json:"container"`
	Image     string    `json:"image,omitempty"`
	Node      string    `json:"node"`             // the node that took it
	Copies    []string  `json:"copies,omitempty"` // other nodes holding its data
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
	Template  string    `json:"template,omitempty"`
	Auto      bool      `json:"auto,omitempty"` // taken by the periodic snapshots
	Bad       bool      `json:"bad,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// SnapshotRequest asks for a snapshot of a running container.
type SnapshotRequest struct {
	Container string `json:"container"`
	Stop      bool   `json:"stop,omitempty"`
	// Copies is how many other nodes keep a copy; nil means 1.
	Copies *int `json:"copies,omitempty"`
	// Template names the snapshot as a clone source (ferry template create).
	Template string `json:"template,omitempty"`
}

// SnapshotResult is the report of a snapshot: the catalogue entry, the node's report, and the copies that
// could not be made.
type SnapshotResult struct {
	Snapshot SnapshotView         `json:"snapshot"`
	Report   *node.SnapshotReport `json:"report"`
	CopyTook time.Duration        `json:"copy_took"`
	Warnings []string             `json:"warnings,omitempty"`
}

// LoadSnapshotRequest asks to take a container back to a snapshot.
type LoadSnapshotRequest struct {
	Container string `json:"container"`
	// Node, when set, is where to load it (the container moves there); else its node, or, when that node is
	// gone, a node that holds a copy.
	Node string `json:"node,omitempty"`
}

// LoadSnapshotResult says where the container was restored and how long it took.
type LoadSnapshotResult struct {
	Snapshot  string              `json:"snapshot"`
	Container string              `json:"container"`
	Node      string              `json:"node"`
	MovedFrom string              `json:"moved_from,omitempty"` // the container's node, when it was gone
	Report    *node.RestoreReport `json:"report"`
	Took      time.Duration       `json:"took"`
}

// CloneRequest asks for new containers from a snapshot: Snapshot names one by ID or template name, or
// Container names a container (a template of that name first; else a snapshot of the running container is
// taken for the clones).
type CloneRequest struct {
	Container  string `json:"container,omitempty"`
	Snapshot   string `json:"snapshot,omitempty"`
	Count      int    `json:"count,omitempty"` // 0 means 1
	Node       string `json:"node,omitempty"`
	Spread     bool   `json:"spread,omitempty"`
	NamePrefix string `json:"name_prefix,omitempty"`
}

// CloneResult is the report of a clone request.
type CloneResult struct {
	Snapshot string              `json:"snapshot"`
	Source   string              `json:"source"`
	Clones   []*node.CloneReport `json:"clones"`
	CopiedTo []string            `json:"copied_to,omitempty"` // nodes the snapshot was sent to for these clones
	CopyTook time.Duration       `json:"copy_took,omitempty"` // sending it there (with the image's missing layers)
	Failed   []string            `json:"failed,omitempty"`    // one line per clone that did not start
	Warnings []string            `json:"warnings,omitempty"`  // what went wrong without stopping a clone
	Took     time.Duration       `json:"took"`
}

// CreateSnapshot takes a snapshot through the cluster.
func (c *Client) CreateSnapshot(ctx context.Context, req SnapshotRequest, progress node.ProgressFunc) (*SnapshotResult, error) {
	var out SnapshotResult
	return &out, c.stream(ctx, "POST", "/v1/snapshots", req, progressEvents(progress), &out)
}

// Snapshots lists the cluster's snapshots, of one container when container is not empty.
func (c *Client) Snapshots(ctx context.Context, container string) ([]SnapshotView, error) {
	var out []SnapshotView
	q := ""
	if container != "" {
		q = "?container=" + url.QueryEscape(container)
	}
	return out, c.call(ctx, "GET", "/v1/snapshots"+q, nil, &out)
}

// LoadSnapshot takes a container back to a snapshot.
func (c *Client) LoadSnapshot(ctx context.Context, id string, req LoadSnapshotRequest, progress node.ProgressFunc) (*LoadSnapshotResult, error) {
	var out LoadSnapshotResult
	return &out, c.stream(ctx, "POST", "/v1/snapshots/"+esc(id)+"/load", req, progressEvents(progress), &out)
}

// RemoveSnapshotResult names the snapshot removed and the nodes whose copy could not be removed (down).
type RemoveSnapshotResult struct {
	Removed string   `json:"removed"`
	LeftOn  []string `json:"left_on,omitempty"`
}

// RemoveSnapshot removes a snapshot and its copies; container, when given, must be the snapshot's.
func (c *Client) RemoveSnapshot(ctx context.Context, id, container string) (*RemoveSnapshotResult, error) {
	q := ""
	if container != "" {
		q = "?container=" + url.QueryEscape(container)
	}
	var out RemoveSnapshotResult
	return &out, c.call(ctx, "DELETE", "/v1/snapshots/"+esc(id)+q, nil, &out)
}

// Clone starts new containers from a snapshot.
func (c *Client) Clone(ctx context.Context, req CloneRequest, progress node.ProgressFunc) (*CloneResult, error) {
	var out CloneResult
	return &out, c.stream(ctx, "POST", "/v1/clones", req, progressEvents(progress), &out)
}
