package cluster

import (
	"maps"
	"slices"
	"sort"
	"time"
)

// NodeStatus is a node's liveness as membership last reported it.
type NodeStatus string

// Node statuses. A node is "alive" when memberlist says so, "suspect" while
// memberlist probes it after missed acks, "dead" once it is declared failed,
// and "left" after a graceful leave.
const (
	StatusAlive   NodeStatus = "alive"
	StatusSuspect NodeStatus = "suspect"
	StatusDead    NodeStatus = "dead"
	StatusLeft    NodeStatus = "left"
)

func (s NodeStatus) valid() bool {
	switch s {
	case StatusAlive, StatusSuspect, StatusDead, StatusLeft:
		return true
	}
	return false
}

// DesiredState is what the cluster wants a container to be doing.
type DesiredState string

// Desired container states.
const (
	DesiredRunning DesiredState = "running"
	DesiredStopped DesiredState = "stopped"
)

func (d DesiredState) valid() bool { return d == DesiredRunning || d == DesiredStopped }

// JobState is the state of a migration job, a drain job or a drain item.
type JobState string

// Job states. Migrations move through planned, dumping, streaming and
// restoring; drain jobs and drain items use planned and running. Committed,
// rolled-back and failed are final for both; skipped is final, for drain
// items only.
const (
	JobPlanned    JobState = "planned"
	JobDumping    JobState = "dumping"
	JobStreaming  JobState = "streaming"
	JobRestoring  JobState = "restoring"
	JobRunning    JobState = "running"
	JobCommitted  JobState = "committed"
	JobRolledBack JobState = "rolled-back"
	JobFailed     JobState = "failed"
	// JobSkipped is a drain item that was not to be moved (a container started
	// with --no-migrate, or one that is not running); it stays and says why.
	JobSkipped JobState = "skipped"
	// JobSnapshotted is a drain item that could not move by the deadline of a
	// drain with --force: it was snapshotted (DrainItem.Snapshot) and stopped.
	JobSnapshotted JobState = "snapshotted"
	// JobRestored is an item of a failover (a drain of a dead node): the
	// container was restored on Target from DrainItem.Snapshot, losing what it
	// did after that snapshot (DrainItem.Lost).
	JobRestored JobState = "restored"
)

// Final reports whether no further transition is allowed from s.
func (s JobState) Final() bool {
	switch s {
	case JobCommitted, JobRolledBack, JobFailed, JobSkipped, JobSnapshotted, JobRestored:
		return true
	}
	return false
}

func (s JobState) valid() bool {
	switch s {
	case JobPlanned, JobDumping, JobStreaming, JobRestoring, JobRunning, JobCommitted, JobRolledBack, JobFailed, JobSkipped,
		JobSnapshotted, JobRestored:
		return true
	}
	return false
}

// Role is an operator's permission level.
type Role string

// Operator roles: a controller may change things, a viewer may only read.
const (
	RoleController Role = "controller"
	RoleViewer     Role = "viewer"
)

// Node is one agent's host as the cluster knows it.
type Node struct {
	Name       string     `json:"name"`
	Addr       string     `json:"addr"`        // agent API address, host:port
	RaftAddr   string     `json:"raft_addr"`   // raft transport address
	GossipAddr string     `json:"gossip_addr"` // memberlist address, host:port
	Status     NodeStatus `json:"status"`
	// Eligible is false while the node drains or after an operator drained it
	// (until undrain); the scheduler places nothing on an ineligible node.
	Eligible       bool            `json:"eligible"`
	Maintenance    bool            `json:"maintenance,omitempty"`
	CapacityMemory int64           `json:"capacity_memory"` // bytes
	FreeMemory     int64           `json:"free_memory"`     // bytes, as last reported by the node
	Features       map[string]bool `json:"features,omitempty"`
	JoinedAt       time.Time       `json:"joined_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	// DownSince is when the node stopped being alive (suspect, dead or left),
	// as the leader recorded it; zero while it is alive.
	DownSince time.Time `json:"down_since,omitzero"`
}

// Clone returns a deep copy of n.
func (n *Node) Clone() *Node {
	c := *n
	c.Features = maps.Clone(n.Features)
	return &c
}

// Image is a container image and the nodes that hold it.
type Image struct {
	Name   string   `json:"name"`
	ID     string   `json:"id"`
	Layers []string `json:"layers,omitempty"`
	Nodes  []string `json:"nodes,omitempty"` // sorted
}

// Clone returns a deep copy of im.
func (im *Image) Clone() *Image {
	c := *im
	c.Layers = slices.Clone(im.Layers)
	c.Nodes = slices.Clone(im.Nodes)
	return &c
}

// ContainerConfig is the recorded configuration of a container.
type ContainerConfig struct {
	Args          []string      `json:"args,omitempty"`
	Env           []string      `json:"env,omitempty"`
	MemoryBytes   int64         `json:"memory_bytes,omitempty"`
	Net           string        `json:"net,omitempty"` // "none" or "host"
	NoMigrate     bool          `json:"no_migrate,omitempty"`
	SnapshotEvery time.Duration `json:"snapshot_every,omitempty"`
	Keep          int           `json:"keep,omitempty"`
}

// Clone returns a deep copy of c.
func (c ContainerConfig) Clone() ContainerConfig {
	c.Args = slices.Clone(c.Args)
	c.Env = slices.Clone(c.Env)
	return c
}

// Container is a container's placement and desired state.
type Container struct {
	Name    string          `json:"name"`
	Node    string          `json:"node"`
	Image   string          `json:"image"`
	Desired DesiredState    `json:"desired"`
	Config  ContainerConfig `json:"config"`
	// Generation starts at 1 and grows by one with every change to the
	// container (UpdateContainer, a committed migration). Conditional updates
	// compare it to detect concurrent writers.
	Generation uint64    `json:"generation"`
	CreatedAt  time.Time `json:"created_at"`
}

// Clone returns a deep copy of c.
func (c *Container) Clone() *Container {
	d := *c
	d.Config = c.Config.Clone()
	return &d
}

// Snapshot is a checkpoint of a container and where its data lives.
type Snapshot struct {
	ID        string    `json:"id"`
	Container string    `json:"container"`
	Node      string    `json:"node"`             // node that took it
	Copies    []string  `json:"copies,omitempty"` // nodes holding its data
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
	Bad       bool      `json:"bad,omitempty"`
	Reason    string    `json:"reason,omitempty"` // why it was marked bad
	// Template, when set, names the snapshot as a clone source (ferry template create); unique in the cluster.
	Template string `json:"template,omitempty"`
	// Auto marks a snapshot taken by the periodic snapshots (--snapshot-every); only those count for --keep.
	Auto bool `json:"auto,omitempty"`
	// Image and Config are the container's image and recorded configuration when it was taken: what a load
	// puts back and what a clone starts with.
	Image  string          `json:"image,omitempty"`
	Config ContainerConfig `json:"config,omitzero"`
}

// Holders returns the nodes that hold the snapshot's data: the node that took it, then its copies.
func (s *Snapshot) Holders() []string {
	out := []string{s.Node}
	for _, n := range s.Copies {
		if n != s.Node && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// TemplateSnapshot returns the snapshot named as template name, or nil.
func (s *State) TemplateSnapshot(name string) *Snapshot {
	for _, sn := range s.Snapshots {
		if sn.Template == name {
			return sn
		}
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *Snapshot) Clone() *Snapshot {
	c := *s
	c.Copies = slices.Clone(s.Copies)
	c.Config = s.Config.Clone()
	return &c
}

// MigrationJob is one migration of a container between nodes.
type MigrationJob struct {
	ID        string    `json:"id"`
	Container string    `json:"container"`
	Source    string    `json:"source"`
	Target    string    `json:"target"`
	Mode      string    `json:"mode"` // auto, stop-copy, pre-copy, post-copy
	State     JobState  `json:"state"`
	Error     string    `json:"error,omitempty"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Clone returns a copy of m.
func (m *MigrationJob) Clone() *MigrationJob { c := *m; return &c }

// DrainItem is one container of a drain job. Its State is planned until the
// drainer takes it, running while its migration runs, then committed (moved
// to Target), failed (it stays on the node; Error says why) or skipped (not to
// be moved; Error says why).
type DrainItem struct {
	Container string   `json:"container"`
	Target    string   `json:"target,omitempty"`
	State     JobState `json:"state"`
	Error     string   `json:"error,omitempty"`
	// Migration is the ID of the item's current (or last) migration job.
	Migration string `json:"migration,omitempty"`
	// Attempts counts the migrations tried; Tried lists the targets that failed.
	Attempts int      `json:"attempts,omitempty"`
	Tried    []string `json:"tried,omitempty"`
	// Downtime is the committed migration's downtime (0 when unknown, e.g.
	// finished by another leader); for a restored item, the time from the
	// node going down to the container running again.
	Downtime time.Duration `json:"downtime,omitempty"`
	// Snapshot is the snapshot a forced item was stopped into, or the one a
	// restored item came back from.
	Snapshot string `json:"snapshot,omitempty"`
	// Lost is what a restored item lost: the time from its snapshot to its
	// node going down.
	Lost time.Duration `json:"lost,omitempty"`
	// Waiting marks a failover's item left on the dead node for want of a
	// place (no node with room, no snapshot copy on an alive node): the
	// leader starts another failover when one appears.
	Waiting bool `json:"waiting,omitempty"`
}

// DrainJob evacuates a node. Deadline, when not zero, is when the drainer
// stops starting migrations; with Force, what has not moved by then is
// snapshotted and stopped. A job with Reason ReasonFailover evacuates a dead
// node by restoring its containers elsewhere from their latest snapshots.
type DrainJob struct {
	ID          string      `json:"id"`
	Node        string      `json:"node"`
	State       JobState    `json:"state"`
	Error       string      `json:"error,omitempty"`
	Reason      string      `json:"reason,omitempty"` // who asked: drain, maintenance, shutdown
	Deadline    time.Time   `json:"deadline"`
	MaxParallel int         `json:"max_parallel"`
	Force       bool        `json:"force,omitempty"`
	Items       []DrainItem `json:"items,omitempty"`
	StartedAt   time.Time   `json:"started_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	FinishedAt  time.Time   `json:"finished_at,omitzero"`
}

// Clone returns a deep copy of d.
func (d *DrainJob) Clone() *DrainJob {
	c := *d
	c.Items = slices.Clone(d.Items)
	for i := range c.Items {
		c.Items[i].Tried = slices.Clone(c.Items[i].Tried)
	}
	return &c
}

// Operator is a person's SSH key and role.
type Operator struct {
	ID        string `json:"id"` // SHA256 fingerprint of the public key
	Name      string `json:"name"`
	Role      Role   `json:"role"`
	PublicKey string `json:"public_key"` // authorized_keys form
}

// Clone returns a copy of o.
func (o *Operator) Clone() *Operator { c := *o; return &c }

// State is the whole replicated cluster state. The FSM owns the live State;
// everything handed out of the FSM or the Store is a Clone, which the caller
// owns and may modify. Maps are keyed by name (nodes, images, containers) or
// by ID (snapshots, jobs, operators) and are never nil in a State made by
// NewState, Clone or Restore.
type State struct {
	Index      uint64                   `json:"index"` // raft index of the last applied command
	Nodes      map[string]*Node         `json:"nodes"`
	Images     map[string]*Image        `json:"images"`
	Containers map[string]*Container    `json:"containers"`
	Snapshots  map[string]*Snapshot     `json:"snapshots"`
	Migrations map[string]*MigrationJob `json:"migrations"`
	Drains     map[string]*DrainJob     `json:"drains"`
	Operators  map[string]*Operator     `json:"operators"`
}

// NewState returns an empty State.
func NewState() *State {
	return &State{
		Nodes:      map[string]*Node{},
		Images:     map[string]*Image{},
		Containers: map[string]*Container{},
		Snapshots:  map[string]*Snapshot{},
		Migrations: map[string]*MigrationJob{},
		Drains:     map[string]*DrainJob{},
		Operators:  map[string]*Operator{},
	}
}

func cloneMap[T any](m map[string]*T, f func(*T) *T) map[string]*T {
	c := make(map[string]*T, len(m))
	for k, v := range m {
		c[k] = f(v)
	}
	return c
}

// Clone returns a deep copy of s; nothing in it is shared with s.
func (s *State) Clone() *State {
	return &State{
		Index:      s.Index,
		Nodes:      cloneMap(s.Nodes, (*Node).Clone),
		Images:     cloneMap(s.Images, (*Image).Clone),
		Containers: cloneMap(s.Containers, (*Container).Clone),
		Snapshots:  cloneMap(s.Snapshots, (*Snapshot).Clone),
		Migrations: cloneMap(s.Migrations, (*MigrationJob).Clone),
		Drains:     cloneMap(s.Drains, (*DrainJob).Clone),
		Operators:  cloneMap(s.Operators, (*Operator).Clone),
	}
}

func sortedValues[T any](m map[string]*T) []*T {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// NodeList returns the nodes sorted by name.
func (s *State) NodeList() []*Node { return sortedValues(s.Nodes) }

// ContainerList returns the containers sorted by name.
func (s *State) ContainerList() []*Container { return sortedValues(s.Containers) }

// ImageList returns the images sorted by name.
func (s *State) ImageList() []*Image { return sortedValues(s.Images) }

// OperatorList returns the operators sorted by ID.
func (s *State) OperatorList() []*Operator { return sortedValues(s.Operators) }

// ContainersOn returns the containers placed on node, sorted by name.
func (s *State) ContainersOn(node string) []*Container {
	var out []*Container
	for _, c := range s.Containers {
		if c.Node == node {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ReservedMemory returns the memory the scheduler counts as taken on node:
// the memory limits of the containers placed there with desired state
// running, plus those of containers an active migration is bringing there.
func (s *State) ReservedMemory(node string) int64 {
	var sum int64
	for _, c := range s.Containers {
		if c.Node == node && c.Desired == DesiredRunning {
			sum += c.Config.MemoryBytes
		}
	}
	for _, m := range s.Migrations {
		if m.Target == node && !m.State.Final() {
			if c, ok := s.Containers[m.Container]; ok && c.Node != node {
				sum += c.Config.MemoryBytes
			}
		}
	}
	return sum
}

// SnapshotsOf returns the snapshots of a container, oldest first.
func (s *State) SnapshotsOf(container string) []*Snapshot {
	var out []*Snapshot
	for _, sn := range s.Snapshots {
		if sn.Container == container {
			out = append(out, sn)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// ActiveMigration returns the container's migration job that is not final, or nil.
func (s *State) ActiveMigration(container string) *MigrationJob {
	for _, m := range s.Migrations {
		if m.Container == container && !m.State.Final() {
			return m
		}
	}
	return nil
}

// ActiveDrain returns the node's drain job that is not final, or nil.
func (s *State) ActiveDrain(node string) *DrainJob {
	for _, d := range s.Drains {
		if d.Node == node && !d.State.Final() {
			return d
		}
	}
	return nil
}

// LatestDrain returns the node's most recently started drain job, or nil.
func (s *State) LatestDrain(node string) *DrainJob {
	var out *DrainJob
	for _, d := range s.Drains {
		if d.Node == node && (out == nil || d.StartedAt.After(out.StartedAt) || (d.StartedAt.Equal(out.StartedAt) && d.ID > out.ID)) {
			out = d
		}
	}
	return out
}

// ReasonFailover is the Reason of a drain job that restores a dead node's
// containers from their snapshots.
const ReasonFailover = "failover"

// LatestFailover returns the node's most recent failover job, or nil.
func (s *State) LatestFailover(node string) *DrainJob {
	var out *DrainJob
	for _, d := range s.Drains {
		if d.Node == node && d.Reason == ReasonFailover && (out == nil || d.StartedAt.After(out.StartedAt)) {
			out = d
		}
	}
	return out
}

// UnfinishedDrains returns the drain jobs that are not final, sorted by ID:
// what a new leader must resume.
func (s *State) UnfinishedDrains() []*DrainJob {
	var out []*DrainJob
	for _, d := range s.Drains {
		if !d.State.Final() {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// UnfinishedMigrations returns the migration jobs that are not final, sorted
// by ID: what a new leader must drive to a finish or a roll-back.
func (s *State) UnfinishedMigrations() []*MigrationJob {
	var out []*MigrationJob
	for _, m := range s.Migrations {
		if !m.State.Final() {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ImagesOn returns the names of the images held by node, sorted.
func (s *State) ImagesOn(node string) []string {
	var out []string
	for _, im := range s.Images {
		if slices.Contains(im.Nodes, node) {
			out = append(out, im.Name)
		}
	}
	slices.Sort(out)
	return out
}
