package cluster

import (
	"encoding/json"
	"fmt"
	"time"
)

// CommandType names a command in the raft log. The values are part of the
// on-disk format: never rename or reuse one.
type CommandType string

// Command types, one per Op.
const (
	CmdRegisterNode    CommandType = "register-node"
	CmdUpdateNode      CommandType = "update-node"
	CmdRemoveNode      CommandType = "remove-node"
	CmdPutImage        CommandType = "put-image"
	CmdRemoveImage     CommandType = "remove-image"
	CmdPlaceContainer  CommandType = "place-container"
	CmdUpdateContainer CommandType = "update-container"
	CmdRemoveContainer CommandType = "remove-container"
	CmdPutSnapshot     CommandType = "put-snapshot"
	CmdRemoveSnapshot  CommandType = "remove-snapshot"
	CmdMarkSnapshotBad CommandType = "mark-snapshot-bad"
	CmdAddSnapshotCopy CommandType = "add-snapshot-copy"
	CmdCreateMigration CommandType = "create-migration"
	CmdUpdateMigration CommandType = "update-migration"
	CmdCreateDrain     CommandType = "create-drain"
	CmdUpdateDrain     CommandType = "update-drain"
	CmdAddOperator     CommandType = "add-operator"
	CmdRemoveOperator  CommandType = "remove-operator"
)

// Command is the envelope written to the raft log and sent to the leader when
// a follower forwards a write: a type and the JSON of the matching Op.
type Command struct {
	Type    CommandType     `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// Result is what a successfully applied command returns.
type Result struct {
	// Index is the raft log index the command was applied at.
	Index uint64 `json:"index"`
	// Generation is the container's generation after PlaceContainer,
	// UpdateContainer or an UpdateMigration that committed; 0 otherwise.
	Generation uint64 `json:"generation,omitempty"`
}

// Op is one typed command. The set is closed: only this package's types
// implement it. apply validates against s first and changes s only when it
// returns a nil error; at is the time the leader appended the command, the
// only clock an apply may read, so that every replica computes the same state.
type Op interface {
	CommandType() CommandType
	apply(s *State, at time.Time) (Result, error)
}

var opTypes = map[CommandType]func() Op{
	CmdRegisterNode:    func() Op { return new(RegisterNode) },
	CmdUpdateNode:      func() Op { return new(UpdateNode) },
	CmdRemoveNode:      func() Op { return new(RemoveNode) },
	CmdPutImage:        func() Op { return new(PutImage) },
	CmdRemoveImage:     func() Op { return new(RemoveImage) },
	CmdPlaceContainer:  func() Op { return new(PlaceContainer) },
	CmdUpdateContainer: func() Op { return new(UpdateContainer) },
	CmdRemoveContainer: func() Op { return new(RemoveContainer) },
	CmdPutSnapshot:     func() Op { return new(PutSnapshot) },
	CmdRemoveSnapshot:  func() Op { return new(RemoveSnapshot) },
	CmdMarkSnapshotBad: func() Op { return new(MarkSnapshotBad) },
	CmdAddSnapshotCopy: func() Op { return new(AddSnapshotCopy) },
	CmdCreateMigration: func() Op { return new(CreateMigration) },
	CmdUpdateMigration: func() Op { return new(UpdateMigration) },
	CmdCreateDrain:     func() Op { return new(CreateDrain) },
	CmdUpdateDrain:     func() Op { return new(UpdateDrain) },
	CmdAddOperator:     func() Op { return new(AddOperator) },
	CmdRemoveOperator:  func() Op { return new(RemoveOperator) },
}

// NewCommand wraps op in its envelope.
func NewCommand(op Op) (Command, error) {
	b, err := json.Marshal(op)
	if err != nil {
		return Command{}, fmt.Errorf("encode %s: %w", op.CommandType(), err)
	}
	return Command{Type: op.CommandType(), Payload: b}, nil
}

// Decode returns the typed Op in c. An unknown type or a payload that does
// not decode is ErrInvalid.
func (c Command) Decode() (Op, error) {
	mk, ok := opTypes[c.Type]
	if !ok {
		return nil, errorf(ErrInvalid, "unknown command type %q; is this agent older than the leader?", c.Type)
	}
	op := mk()
	if err := json.Unmarshal(c.Payload, op); err != nil {
		return nil, errorf(ErrInvalid, "decode %s command: %v", c.Type, err)
	}
	return op, nil
}

// RegisterNode adds a node or, if it exists, refreshes its addresses,
// capacity, features and status while keeping JoinedAt, Eligible and
// Maintenance (which operators own). A new node starts eligible.
type RegisterNode struct {
	Node Node `json:"node"`
}

// UpdateNode changes the fields that are set (nil means unchanged).
type UpdateNode struct {
	Name           string          `json:"name"`
	Status         *NodeStatus     `json:"status,omitempty"`
	Eligible       *bool           `json:"eligible,omitempty"`
	Maintenance    *bool           `json:"maintenance,omitempty"`
	CapacityMemory *int64          `json:"capacity_memory,omitempty"`
	FreeMemory     *int64          `json:"free_memory,omitempty"`
	Features       map[string]bool `json:"features,omitempty"` // replaces when non-nil
}

// RemoveNode forgets a node. A node that still has containers is refused
// unless Force is set; with Force its containers stay, pointing at a node
// that no longer exists, for the leader to reschedule.
type RemoveNode struct {
	Name  string `json:"name"`
	Force bool   `json:"force,omitempty"`
}

// PutImage records an image. If an image with that name and the same ID
// exists, Image.Nodes is added to its locations; if the ID differs, the new
// image replaces the old one.
type PutImage struct {
	Image Image `json:"image"`
}

// RemoveImage removes one location of an image, or the whole image when Node
// is empty or the last location goes.
type RemoveImage struct {
	Name string `json:"name"`
	Node string `json:"node,omitempty"`
}

// PlaceContainer creates a container on a node. Generation is set to 1;
// CreatedAt, when zero, to the apply time; Desired, when empty, to running.
type PlaceContainer struct {
	Container Container `json:"container"`
}

// UpdateContainer changes the set fields of a container and bumps its
// generation. If IfGeneration is not 0 the update applies only when the
// container's generation equals it (else ErrConflict).
type UpdateContainer struct {
	Name         string           `json:"name"`
	Desired      *DesiredState    `json:"desired,omitempty"`
	Node         *string          `json:"node,omitempty"`
	Config       *ContainerConfig `json:"config,omitempty"`
	IfGeneration uint64           `json:"if_generation,omitempty"`
}

// RemoveContainer deletes a container, conditionally like UpdateContainer.
// Its snapshot records stay (their data is still on disk) until removed.
type RemoveContainer struct {
	Name         string `json:"name"`
	IfGeneration uint64 `json:"if_generation,omitempty"`
}

// PutSnapshot records a new snapshot; Created, when zero, is the apply time.
type PutSnapshot struct {
	Snapshot Snapshot `json:"snapshot"`
}

// RemoveSnapshot forgets a snapshot.
type RemoveSnapshot struct {
	ID string `json:"id"`
}

// MarkSnapshotBad flags a snapshot whose data failed a check.
type MarkSnapshotBad struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// AddSnapshotCopy records that Node holds a copy of a snapshot (a copy was made, or cached for clones). It adds
// to the list in the FSM, so that copies recorded at the same time do not overwrite each other; a node that
// already holds the snapshot is left as it is.
type AddSnapshotCopy struct {
	ID   string `json:"id"`
	Node string `json:"node"`
}

// CreateMigration records a planned migration. A container has at most one
// active migration (else ErrBusy).
type CreateMigration struct {
	Job MigrationJob `json:"job"`
}

// UpdateMigration moves a migration job to State. Moving it to committed
// also moves the container to the job's target and bumps its generation in
// the same log entry, so the cluster never sees the container on both nodes.
type UpdateMigration struct {
	ID    string   `json:"id"`
	State JobState `json:"state"`
	Error string   `json:"error,omitempty"`
}

// CreateDrain records a drain job and marks the node ineligible in the same
// entry (not for a failover, which restores a dead node's containers
// elsewhere: that node takes work again when it comes back). A node has at
// most one active drain (else ErrBusy).
type CreateDrain struct {
	Job DrainJob `json:"job"`
}

// UpdateDrain sets a drain job's state (empty: unchanged) and, when Items is
// non-nil, its items; Error, when set, replaces the job's error. Items may
// still change once the job is final (a migration that was running when the
// job was cancelled records its outcome), its state may not.
type UpdateDrain struct {
	ID    string      `json:"id"`
	State JobState    `json:"state"`
	Error string      `json:"error,omitempty"`
	Items []DrainItem `json:"items,omitempty"`
}

// AddOperator registers an operator's key.
type AddOperator struct {
	Operator Operator `json:"operator"`
}

// RemoveOperator removes an operator's key.
type RemoveOperator struct {
	ID string `json:"id"`
}

// CommandType implementations.
func (*RegisterNode) CommandType() CommandType    { return CmdRegisterNode }
func (*UpdateNode) CommandType() CommandType      { return CmdUpdateNode }
func (*RemoveNode) CommandType() CommandType      { return CmdRemoveNode }
func (*PutImage) CommandType() CommandType        { return CmdPutImage }
func (*RemoveImage) CommandType() CommandType     { return CmdRemoveImage }
func (*PlaceContainer) CommandType() CommandType  { return CmdPlaceContainer }
func (*UpdateContainer) CommandType() CommandType { return CmdUpdateContainer }
func (*RemoveContainer) CommandType() CommandType { return CmdRemoveContainer }
func (*PutSnapshot) CommandType() CommandType     { return CmdPutSnapshot }
func (*RemoveSnapshot) CommandType() CommandType  { return CmdRemoveSnapshot }
func (*MarkSnapshotBad) CommandType() CommandType { return CmdMarkSnapshotBad }
func (*AddSnapshotCopy) CommandType() CommandType { return CmdAddSnapshotCopy }
func (*CreateMigration) CommandType() CommandType { return CmdCreateMigration }
func (*UpdateMigration) CommandType() CommandType { return CmdUpdateMigration }
func (*CreateDrain) CommandType() CommandType     { return CmdCreateDrain }
func (*UpdateDrain) CommandType() CommandType     { return CmdUpdateDrain }
func (*AddOperator) CommandType() CommandType     { return CmdAddOperator }
func (*RemoveOperator) CommandType() CommandType  { return CmdRemoveOperator }
