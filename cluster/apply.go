package cluster

import (
	"slices"
	"time"
)

// This file holds the apply methods of the Ops: each validates everything
// first and mutates the State only after the last check passed.

func needName(kind, name string) error {
	if name == "" {
		return errorf(ErrInvalid, "%s name is empty; give a name", kind)
	}
	return nil
}

func needNode(s *State, name string) (*Node, error) {
	if err := needName("node", name); err != nil {
		return nil, err
	}
	n, ok := s.Nodes[name]
	if !ok {
		return nil, errorf(ErrUnknownNode, "node %q is not in the cluster; list the nodes with 'ferry node ls'", name)
	}
	return n, nil
}

func needNodes(s *State, names []string) error {
	for _, n := range names {
		if _, err := needNode(s, n); err != nil {
			return err
		}
	}
	return nil
}

func needContainer(s *State, name string) (*Container, error) {
	if err := needName("container", name); err != nil {
		return nil, err
	}
	c, ok := s.Containers[name]
	if !ok {
		return nil, errorf(ErrUnknownContainer, "container %q does not exist; list the containers with 'ferry ps'", name)
	}
	return c, nil
}

func checkGeneration(c *Container, want uint64) error {
	if want != 0 && c.Generation != want {
		return errorf(ErrConflict, "container %q is at generation %d, the update expected %d; re-read it and retry",
			c.Name, c.Generation, want)
	}
	return nil
}

func (op *RegisterNode) apply(s *State, at time.Time) (Result, error) {
	in := op.Node
	if err := needName("node", in.Name); err != nil {
		return Result{}, err
	}
	if in.Status == "" {
		in.Status = StatusAlive
	}
	if !in.Status.valid() {
		return Result{}, errorf(ErrInvalid, "node status %q is not one of alive, suspect, dead, left", in.Status)
	}
	n := in.Clone()
	n.UpdatedAt = at
	if old, ok := s.Nodes[in.Name]; ok {
		n.JoinedAt, n.Eligible, n.Maintenance = old.JoinedAt, old.Eligible, old.Maintenance
		n.DownSince = downSince(old, n.Status, at)
	} else {
		n.Eligible = true
		if n.Status != StatusAlive {
			n.DownSince = at
		}
		if n.JoinedAt.IsZero() {
			n.JoinedAt = at
		}
	}
	s.Nodes[n.Name] = n
	return Result{}, nil
}

func (op *UpdateNode) apply(s *State, at time.Time) (Result, error) {
	n, err := needNode(s, op.Name)
	if err != nil {
		return Result{}, err
	}
	if op.Status != nil && !op.Status.valid() {
		return Result{}, errorf(ErrInvalid, "node status %q is not one of alive, suspect, dead, left", *op.Status)
	}
	n = n.Clone()
	if op.Status != nil {
		n.DownSince = downSince(n, *op.Status, at)
		n.Status = *op.Status
	}
	if op.Eligible != nil {
		n.Eligible = *op.Eligible
	}
	if op.Maintenance != nil {
		n.Maintenance = *op.Maintenance
	}
	if op.CapacityMemory != nil {
		n.CapacityMemory = *op.CapacityMemory
	}
	if op.FreeMemory != nil {
		n.FreeMemory = *op.FreeMemory
	}
	if op.Features != nil {
		n.Features = op.Features
	}
	n.UpdatedAt = at
	s.Nodes[n.Name] = n
	return Result{}, nil
}

// downSince is a node's DownSince once its status becomes to: kept while it
// stays down, at when it goes down, zero when it is alive.
func downSince(n *Node, to NodeStatus, at time.Time) time.Time {
	switch {
	case to == StatusAlive:
		return time.Time{}
	case n.Status == StatusAlive || n.DownSince.IsZero():
		return at
	}
	return n.DownSince
}

func (op *RemoveNode) apply(s *State, _ time.Time) (Result, error) {
	if _, err := needNode(s, op.Name); err != nil {
		return Result{}, err
	}
	if cs := s.ContainersOn(op.Name); len(cs) > 0 && !op.Force {
		return Result{}, errorf(ErrNodeInUse, "node %q still has %d containers; drain it first ('ferry node drain %s') or remove it with force",
			op.Name, len(cs), op.Name)
	}
	delete(s.Nodes, op.Name)
	for name, im := range s.Images {
		if i := slices.Index(im.Nodes, op.Name); i >= 0 {
			im = im.Clone()
			im.Nodes = slices.Delete(im.Nodes, i, i+1)
			s.Images[name] = im
		}
	}
	// Its copies of snapshots went with it (the snapshot's own node stays in the record: it names where the
	// snapshot was taken, and is never alive again under that name unless the node joins anew).
	for id, sn := range s.Snapshots {
		if i := slices.Index(sn.Copies, op.Name); i >= 0 {
			sn = sn.Clone()
			sn.Copies = slices.Delete(sn.Copies, i, i+1)
			s.Snapshots[id] = sn
		}
	}
	return Result{}, nil
}

func (op *PutImage) apply(s *State, _ time.Time) (Result, error) {
	in := op.Image
	if err := needName("image", in.Name); err != nil {
		return Result{}, err
	}
	if err := needNodes(s, in.Nodes); err != nil {
		return Result{}, err
	}
	im := in.Clone()
	if old, ok := s.Images[in.Name]; ok && old.ID == in.ID {
		im.Nodes = append(slices.Clone(old.Nodes), in.Nodes...)
		if im.Layers == nil {
			im.Layers = slices.Clone(old.Layers)
		}
	}
	slices.Sort(im.Nodes)
	im.Nodes = slices.Compact(im.Nodes)
	s.Images[im.Name] = im
	return Result{}, nil
}

func (op *RemoveImage) apply(s *State, _ time.Time) (Result, error) {
	im, ok := s.Images[op.Name]
	if !ok {
		return Result{}, errorf(ErrUnknownImage, "image %q is not known; list the images with 'ferry image ls'", op.Name)
	}
	if op.Node == "" {
		delete(s.Images, op.Name)
		return Result{}, nil
	}
	i := slices.Index(im.Nodes, op.Node)
	if i < 0 {
		return Result{}, errorf(ErrUnknownNode, "image %q is not on node %q", op.Name, op.Node)
	}
	im = im.Clone()
	im.Nodes = slices.Delete(im.Nodes, i, i+1)
	if len(im.Nodes) == 0 {
		delete(s.Images, op.Name)
	} else {
		s.Images[op.Name] = im
	}
	return Result{}, nil
}

func (op *PlaceContainer) apply(s *State, at time.Time) (Result, error) {
	in := op.Container
	if err := needName("container", in.Name); err != nil {
		return Result{}, err
	}
	if _, ok := s.Containers[in.Name]; ok {
		return Result{}, errorf(ErrExists, "container %q already exists; choose another name or remove it first ('ferry rm %s')", in.Name, in.Name)
	}
	if _, err := needNode(s, in.Node); err != nil {
		return Result{}, err
	}
	if in.Image == "" {
		return Result{}, errorf(ErrInvalid, "container %q names no image; give one", in.Name)
	}
	if in.Desired == "" {
		in.Desired = DesiredRunning
	}
	if !in.Desired.valid() {
		return Result{}, errorf(ErrInvalid, "desired state %q is not running or stopped", in.Desired)
	}
	c := in.Clone()
	c.Generation = 1
	if c.CreatedAt.IsZero() {
		c.CreatedAt = at
	}
	s.Containers[c.Name] = c
	return Result{Generation: c.Generation}, nil
}

func (op *UpdateContainer) apply(s *State, _ time.Time) (Result, error) {
	c, err := needContainer(s, op.Name)
	if err != nil {
		return Result{}, err
	}
	if err := checkGeneration(c, op.IfGeneration); err != nil {
		return Result{}, err
	}
	if op.Desired != nil && !op.Desired.valid() {
		return Result{}, errorf(ErrInvalid, "desired state %q is not running or stopped", *op.Desired)
	}
	if op.Node != nil {
		if _, err := needNode(s, *op.Node); err != nil {
			return Result{}, err
		}
	}
	c = c.Clone()
	if op.Desired != nil {
		c.Desired = *op.Desired
	}
	if op.Node != nil {
		c.Node = *op.Node
	}
	if op.Config != nil {
		c.Config = op.Config.Clone()
	}
	c.Generation++
	s.Containers[c.Name] = c
	return Result{Generation: c.Generation}, nil
}

func (op *RemoveContainer) apply(s *State, _ time.Time) (Result, error) {
	c, err := needContainer(s, op.Name)
	if err != nil {
		return Result{}, err
	}
	if err := checkGeneration(c, op.IfGeneration); err != nil {
		return Result{}, err
	}
	if m := s.ActiveMigration(op.Name); m != nil {
		return Result{}, errorf(ErrBusy, "container %q is being migrated (job %s); wait for it to finish", op.Name, m.ID)
	}
	delete(s.Containers, op.Name)
	return Result{}, nil
}

func (op *PutSnapshot) apply(s *State, at time.Time) (Result, error) {
	in := op.Snapshot
	if err := needName("snapshot", in.ID); err != nil {
		return Result{}, err
	}
	if _, ok := s.Snapshots[in.ID]; ok {
		return Result{}, errorf(ErrExists, "snapshot %q already exists", in.ID)
	}
	if _, err := needContainer(s, in.Container); err != nil {
		return Result{}, err
	}
	if _, err := needNode(s, in.Node); err != nil {
		return Result{}, err
	}
	if err := needNodes(s, in.Copies); err != nil {
		return Result{}, err
	}
	if in.Template != "" {
		if err := needName("template", in.Template); err != nil {
			return Result{}, err
		}
		if t := s.TemplateSnapshot(in.Template); t != nil {
			return Result{}, errorf(ErrExists, "template %q already exists (snapshot %s); remove it first or pick another name", in.Template, t.ID)
		}
	}
	sn := in.Clone()
	if sn.Created.IsZero() {
		sn.Created = at
	}
	s.Snapshots[sn.ID] = sn
	return Result{}, nil
}

func needSnapshot(s *State, id string) (*Snapshot, error) {
	sn, ok := s.Snapshots[id]
	if !ok {
		return nil, errorf(ErrUnknownSnapshot, "snapshot %q does not exist; list them with 'ferry snapshot ls'", id)
	}
	return sn, nil
}

func (op *RemoveSnapshot) apply(s *State, _ time.Time) (Result, error) {
	if _, err := needSnapshot(s, op.ID); err != nil {
		return Result{}, err
	}
	delete(s.Snapshots, op.ID)
	return Result{}, nil
}

func (op *MarkSnapshotBad) apply(s *State, _ time.Time) (Result, error) {
	sn, err := needSnapshot(s, op.ID)
	if err != nil {
		return Result{}, err
	}
	sn = sn.Clone()
	sn.Bad, sn.Reason = true, op.Reason
	s.Snapshots[sn.ID] = sn
	return Result{}, nil
}

func (op *AddSnapshotCopy) apply(s *State, _ time.Time) (Result, error) {
	sn, err := needSnapshot(s, op.ID)
	if err != nil {
		return Result{}, err
	}
	if _, err := needNode(s, op.Node); err != nil {
		return Result{}, err
	}
	if slices.Contains(sn.Holders(), op.Node) {
		return Result{}, nil
	}
	sn = sn.Clone()
	sn.Copies = append(sn.Copies, op.Node)
	s.Snapshots[sn.ID] = sn
	return Result{}, nil
}

var migrationModes = []string{"", "auto", "stop-copy", "pre-copy", "post-copy"}

func (op *CreateMigration) apply(s *State, at time.Time) (Result, error) {
	j := op.Job
	if err := needName("migration job", j.ID); err != nil {
		return Result{}, err
	}
	if _, ok := s.Migrations[j.ID]; ok {
		return Result{}, errorf(ErrExists, "migration job %q already exists", j.ID)
	}
	c, err := needContainer(s, j.Container)
	if err != nil {
		return Result{}, err
	}
	if err := needNodes(s, []string{j.Source, j.Target}); err != nil {
		return Result{}, err
	}
	if c.Node != j.Source {
		return Result{}, errorf(ErrConflict, "container %q is on node %q, not %q; re-read its placement", c.Name, c.Node, j.Source)
	}
	if j.Source == j.Target {
		return Result{}, errorf(ErrInvalid, "container %q is already on node %q; choose another target", c.Name, j.Target)
	}
	if !slices.Contains(migrationModes, j.Mode) {
		return Result{}, errorf(ErrInvalid, "migration mode %q is not one of auto, stop-copy, pre-copy, post-copy", j.Mode)
	}
	if m := s.ActiveMigration(c.Name); m != nil {
		return Result{}, errorf(ErrBusy, "container %q is already being migrated (job %s); wait for it to finish", c.Name, m.ID)
	}
	if j.State == "" {
		j.State = JobPlanned
	}
	if j.State.Final() || !j.State.valid() {
		return Result{}, errorf(ErrInvalidTransition, "a migration job cannot start in state %q", j.State)
	}
	if j.StartedAt.IsZero() {
		j.StartedAt = at
	}
	j.UpdatedAt = at
	s.Migrations[j.ID] = &j
	return Result{}, nil
}

func (op *UpdateMigration) apply(s *State, at time.Time) (Result, error) {
	j, ok := s.Migrations[op.ID]
	if !ok {
		return Result{}, errorf(ErrUnknownJob, "migration job %q does not exist", op.ID)
	}
	if !op.State.valid() || op.State == JobRunning || op.State == JobSkipped {
		return Result{}, errorf(ErrInvalidTransition, "migration state %q is not a migration state", op.State)
	}
	if j.State.Final() && op.State != j.State {
		return Result{}, errorf(ErrInvalidTransition, "migration job %q is already %s; it cannot become %s", j.ID, j.State, op.State)
	}
	var res Result
	if op.State == JobCommitted && j.State != JobCommitted {
		c, err := needContainer(s, j.Container)
		if err != nil {
			return Result{}, err
		}
		if _, err := needNode(s, j.Target); err != nil {
			return Result{}, err
		}
		c = c.Clone()
		c.Node = j.Target
		c.Generation++
		s.Containers[c.Name] = c
		res.Generation = c.Generation
	}
	j = j.Clone()
	j.State, j.Error, j.UpdatedAt = op.State, op.Error, at
	s.Migrations[j.ID] = j
	return res, nil
}

func (op *CreateDrain) apply(s *State, at time.Time) (Result, error) {
	j := op.Job
	if err := needName("drain job", j.ID); err != nil {
		return Result{}, err
	}
	if _, ok := s.Drains[j.ID]; ok {
		return Result{}, errorf(ErrExists, "drain job %q already exists", j.ID)
	}
	n, err := needNode(s, j.Node)
	if err != nil {
		return Result{}, err
	}
	if d := s.ActiveDrain(j.Node); d != nil {
		return Result{}, errorf(ErrBusy, "node %q is already draining (job %s); watch it with 'ferry node drain %s --status'", j.Node, d.ID, j.Node)
	}
	for _, it := range j.Items {
		if _, err := needContainer(s, it.Container); err != nil {
			return Result{}, err
		}
	}
	if j.State == "" {
		j.State = JobPlanned
	}
	if j.State.Final() || !j.State.valid() {
		return Result{}, errorf(ErrInvalidTransition, "a drain job cannot start in state %q", j.State)
	}
	if j.StartedAt.IsZero() {
		j.StartedAt = at
	}
	j.UpdatedAt = at
	d := j.Clone()
	s.Drains[d.ID] = d
	if j.Reason != ReasonFailover {
		n = n.Clone()
		n.Eligible, n.UpdatedAt = false, at
		s.Nodes[n.Name] = n
	}
	return Result{}, nil
}

func (op *UpdateDrain) apply(s *State, at time.Time) (Result, error) {
	j, ok := s.Drains[op.ID]
	if !ok {
		return Result{}, errorf(ErrUnknownJob, "drain job %q does not exist", op.ID)
	}
	state := op.State
	if state == "" {
		state = j.State
	}
	if !state.valid() || state == JobSkipped {
		return Result{}, errorf(ErrInvalidTransition, "drain state %q is not a job state", op.State)
	}
	if j.State.Final() && state != j.State {
		return Result{}, errorf(ErrInvalidTransition, "drain job %q is already %s; it cannot become %s", j.ID, j.State, state)
	}
	for _, it := range op.Items {
		if !it.State.valid() {
			return Result{}, errorf(ErrInvalid, "drain item %s: state %q is not a job state", it.Container, it.State)
		}
	}
	j = j.Clone()
	if state.Final() && !j.State.Final() {
		j.FinishedAt = at
	}
	j.State, j.UpdatedAt = state, at
	if op.Error != "" {
		j.Error = op.Error
	}
	if op.Items != nil {
		j.Items = slices.Clone(op.Items)
	}
	s.Drains[j.ID] = j
	return Result{}, nil
}

func (op *AddOperator) apply(s *State, _ time.Time) (Result, error) {
	o := op.Operator
	if o.ID == "" || o.PublicKey == "" {
		return Result{}, errorf(ErrInvalid, "operator needs an ID (key fingerprint) and a public key")
	}
	if o.Role != RoleController && o.Role != RoleViewer {
		return Result{}, errorf(ErrInvalid, "operator role %q is not controller or viewer", o.Role)
	}
	if _, ok := s.Operators[o.ID]; ok {
		return Result{}, errorf(ErrExists, "operator key %s is already registered; remove it first to change its role", o.ID)
	}
	s.Operators[o.ID] = &o
	return Result{}, nil
}

func (op *RemoveOperator) apply(s *State, _ time.Time) (Result, error) {
	if _, ok := s.Operators[op.ID]; !ok {
		return Result{}, errorf(ErrUnknownOperator, "operator %s is not registered; list them with 'ferry operator ls'", op.ID)
	}
	delete(s.Operators, op.ID)
	return Result{}, nil
}
