package api

import (
	"context"
	"encoding/json"
	"time"
)

// DrainRequest asks the cluster to move every container off a node.
type DrainRequest struct {
	Node string `json:"node"`
	// Deadline bounds when migrations may start (0: none). A container not moved by then stays on the node.
	Deadline time.Duration `json:"deadline,omitempty"`
	// MaxParallel is how many migrations run at once (0: 1).
	MaxParallel int `json:"max_parallel,omitempty"`
	// Detach answers with the job as soon as it is recorded, instead of following it to its end.
	Detach bool `json:"detach,omitempty"`
	// Force snapshots and stops what has not moved by the deadline (it needs Deadline); without it, what
	// cannot move keeps running on the node.
	Force bool `json:"force,omitempty"`
}

// DrainEvent is one step of one container of a drain, streamed as a progress event.
type DrainEvent struct {
	Node      string        `json:"node"`      // the drained node
	Container string        `json:"container"` // empty for an event about the whole drain
	Target    string        `json:"target,omitempty"`
	Phase     string        `json:"phase"` // planned, image, prepare, dumping, restoring, committed, rolled-back, failed, retry, stays, skipped, waiting, snapshotting, snapshotted, restored
	Bytes     int64         `json:"bytes,omitempty"`
	Downtime  time.Duration `json:"downtime,omitempty"`
	Message   string        `json:"message,omitempty"`
	Elapsed   time.Duration `json:"elapsed"` // since the drain started
}

// DrainItemReport is what became of one container of a drain.
type DrainItemReport struct {
	Container string `json:"container"`
	// State: committed (moved), failed (stays), skipped (not to be moved), snapshotted (stopped into
	// Snapshot by --force), restored (a failover brought it back on Target from Snapshot), planned or running.
	State    string        `json:"state"`
	Target   string        `json:"target,omitempty"`
	Downtime time.Duration `json:"downtime,omitempty"`
	// Snapshot is the snapshot a snapshotted item was stopped into, or a restored one came back from.
	Snapshot string `json:"snapshot,omitempty"`
	// Lost is what a restored item lost: the time from its snapshot to its node going down.
	Lost      time.Duration `json:"lost,omitempty"`
	Attempts  int           `json:"attempts,omitempty"`
	Tried     []string      `json:"tried,omitempty"` // targets whose migration failed
	Error     string        `json:"error,omitempty"`
	Migration string        `json:"migration,omitempty"`
}

// DrainReport is a drain job: its state and each container's outcome.
type DrainReport struct {
	ID          string            `json:"id"`
	Node        string            `json:"node"`
	State       string            `json:"state"` // planned, running, committed (none stays), failed (some stay)
	Error       string            `json:"error,omitempty"`
	Reason      string            `json:"reason,omitempty"` // drain, maintenance, shutdown, or failover (the node died)
	Force       bool              `json:"force,omitempty"`
	MaxParallel int               `json:"max_parallel"`
	Deadline    time.Time         `json:"deadline,omitzero"`
	StartedAt   time.Time         `json:"started_at"`
	FinishedAt  time.Time         `json:"finished_at,omitzero"`
	Took        time.Duration     `json:"took,omitempty"`
	Moved       int               `json:"moved"`   // moved live, or restored from a snapshot by a failover
	Stayed      int               `json:"stayed"`  // still on the node
	Stopped     int               `json:"stopped"` // snapshotted and stopped (--force)
	Items       []DrainItemReport `json:"items"`
}

// MaintenanceRequest turns a node's maintenance mode on (which drains it) or off (which makes it eligible).
type MaintenanceRequest struct {
	On bool `json:"on"`
	// Deadline and MaxParallel are the drain's, when On.
	Deadline    time.Duration `json:"deadline,omitempty"`
	MaxParallel int           `json:"max_parallel,omitempty"`
}

// NodeChange is the answer to undrain and maintenance: the node as it is now, and the drain it started or
// ended (if any).
type NodeChange struct {
	Node  NodeView     `json:"node"`
	Drain *DrainReport `json:"drain,omitempty"`
}

// Drain drains a node, calling fn with each event, and returns the final report (or, with Detach, the job as
// recorded).
func (c *Client) Drain(ctx context.Context, req DrainRequest, fn func(DrainEvent)) (*DrainReport, error) {
	var rep DrainReport
	return &rep, c.stream(ctx, "POST", "/v1/drains", req, func(ev Event) error {
		if fn == nil || ev.Type != EventProgress {
			return nil
		}
		var de DrainEvent
		if err := json.Unmarshal(ev.Data, &de); err != nil {
			return err
		}
		fn(de)
		return nil
	}, &rep)
}

// DrainStatus returns the node's latest drain job from the cluster's state.
func (c *Client) DrainStatus(ctx context.Context, nodeName string) (*DrainReport, error) {
	var rep DrainReport
	return &rep, c.call(ctx, "GET", "/v1/drains/"+esc(nodeName), nil, &rep)
}

// Undrain makes a node eligible again, ending its drain if one runs.
func (c *Client) Undrain(ctx context.Context, nodeName string) (*NodeChange, error) {
	var out NodeChange
	return &out, c.call(ctx, "POST", "/v1/nodes/"+esc(nodeName)+"/undrain", nil, &out)
}

// Maintenance turns a node's maintenance mode on or off.
func (c *Client) Maintenance(ctx context.Context, nodeName string, req MaintenanceRequest) (*NodeChange, error) {
	var out NodeChange
	return &out, c.call(ctx, "POST", "/v1/nodes/"+esc(nodeName)+"/maintenance", req, &out)
}

// Leave takes a node that holds nothing out of the cluster: its agent leaves and stops.
func (c *Client) Leave(ctx context.Context, nodeName string) (*NodeView, error) {
	var out NodeView
	return &out, c.call(ctx, "POST", "/v1/nodes/"+esc(nodeName)+"/leave", nil, &out)
}
