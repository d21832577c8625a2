package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// FSM is the raft state machine holding the cluster State.
//
// Concurrency contract. Raft calls Apply, Snapshot and Restore from one
// goroutine, never concurrently with each other; FSMSnapshot.Persist runs on
// another goroutine concurrently with later Applies. Readers (View, State) may
// run on any goroutine at any time. Apply and Restore take the write lock;
// readers take the read lock.
//
// Copy-on-write. An object (*Node, *Container, ...) is never modified once it
// is in the live State: an apply replaces it with a changed copy. So Snapshot
// only copies the maps (pointers), and Persist encodes objects no one will
// change, without holding the lock.
type FSM struct {
	mu    sync.RWMutex
	state *State
}

// Response is what FSM.Apply returns to raft, and what raft's ApplyFuture
// Response() yields on the leader.
type Response struct {
	Result Result
	Err    error
}

// NewFSM returns an FSM with an empty State.
func NewFSM() *FSM { return &FSM{state: NewState()} }

// Apply decodes a Command from the log entry and applies it. A command that
// fails validation returns Response{Err: ...} and leaves the state as it was;
// the log entry stays committed, which is harmless since it changed nothing.
func (f *FSM) Apply(l *raft.Log) any {
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return Response{Err: errorf(ErrInvalid, "decode command at index %d: %v", l.Index, err)}
	}
	return f.applyCommand(l.Index, l.AppendedAt, cmd)
}

func (f *FSM) applyCommand(index uint64, at time.Time, cmd Command) Response {
	op, err := cmd.Decode()
	if err != nil {
		return Response{Err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res, err := op.apply(f.state, at.UTC())
	f.state.Index = index
	if err != nil {
		return Response{Err: err}
	}
	res.Index = index
	return Response{Result: res}
}

// View calls fn with the live state under the read lock. fn must not keep
// references into the state after it returns and must not modify it; it
// should be quick, since it delays Apply.
func (f *FSM) View(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// State returns a deep copy of the state, owned by the caller.
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone()
}

// shallow copies the maps of the live state (see the copy-on-write note).
func (f *FSM) shallow() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.state
	return &State{
		Index:      s.Index,
		Nodes:      maps.Clone(s.Nodes),
		Images:     maps.Clone(s.Images),
		Containers: maps.Clone(s.Containers),
		Snapshots:  maps.Clone(s.Snapshots),
		Migrations: maps.Clone(s.Migrations),
		Drains:     maps.Clone(s.Drains),
		Operators:  maps.Clone(s.Operators),
	}
}

// Snapshot captures the state for raft; Persist writes it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.shallow()}, nil
}

// Restore replaces the state with the one encoded in r.
func (f *FSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	s, err := ReadState(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	return nil
}

type fsmSnapshot struct{ state *State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteState(sink, s.state); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// Snapshot stream format: newline-separated JSON values, streamed one object
// at a time so neither side holds the whole encoding in memory. The first
// value is a header, then one record per object, then a trailer whose count
// lets the reader notice a truncated stream.
const snapshotVersion = 1

type snapshotHeader struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"`
}

type snapshotRecord struct {
	Node      *Node         `json:"n,omitempty"`
	Image     *Image        `json:"i,omitempty"`
	Container *Container    `json:"c,omitempty"`
	Snapshot  *Snapshot     `json:"s,omitempty"`
	Migration *MigrationJob `json:"m,omitempty"`
	Drain     *DrainJob     `json:"d,omitempty"`
	Operator  *Operator     `json:"o,omitempty"`
	End       *int          `json:"end,omitempty"` // trailer: number of records before it
}

// WriteState streams s to w in the snapshot format.
func WriteState(w io.Writer, s *State) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Version: snapshotVersion, Index: s.Index}); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	n := 0
	var err error
	put := func(r snapshotRecord) {
		if err == nil {
			err = enc.Encode(r)
			n++
		}
	}
	for _, v := range s.Nodes {
		put(snapshotRecord{Node: v})
	}
	for _, v := range s.Images {
		put(snapshotRecord{Image: v})
	}
	for _, v := range s.Containers {
		put(snapshotRecord{Container: v})
	}
	for _, v := range s.Snapshots {
		put(snapshotRecord{Snapshot: v})
	}
	for _, v := range s.Migrations {
		put(snapshotRecord{Migration: v})
	}
	for _, v := range s.Drains {
		put(snapshotRecord{Drain: v})
	}
	for _, v := range s.Operators {
		put(snapshotRecord{Operator: v})
	}
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	count := n
	if err := enc.Encode(snapshotRecord{End: &count}); err != nil {
		return fmt.Errorf("write snapshot trailer: %w", err)
	}
	return bw.Flush()
}

// ReadState decodes a State written by WriteState.
func ReadState(r io.Reader) (*State, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("read snapshot header: %w", err)
	}
	if h.Version != snapshotVersion {
		return nil, fmt.Errorf("snapshot format version %d is not %d; upgrade this agent", h.Version, snapshotVersion)
	}
	s := NewState()
	s.Index = h.Index
	for n := 0; ; n++ {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err != nil {
			return nil, fmt.Errorf("read snapshot record %d (truncated?): %w", n, err)
		}
		if rec.End != nil {
			if *rec.End != n {
				return nil, fmt.Errorf("snapshot trailer counts %d records, read %d", *rec.End, n)
			}
			return s, nil
		}
		if err := s.put(rec); err != nil {
			return nil, fmt.Errorf("snapshot record %d: %w", n, err)
		}
	}
}

func (s *State) put(r snapshotRecord) error {
	switch {
	case r.Node != nil:
		s.Nodes[r.Node.Name] = r.Node
	case r.Image != nil:
		s.Images[r.Image.Name] = r.Image
	case r.Container != nil:
		s.Containers[r.Container.Name] = r.Container
	case r.Snapshot != nil:
		s.Snapshots[r.Snapshot.ID] = r.Snapshot
	case r.Migration != nil:
		s.Migrations[r.Migration.ID] = r.Migration
	case r.Drain != nil:
		s.Drains[r.Drain.ID] = r.Drain
	case r.Operator != nil:
		s.Operators[r.Operator.ID] = r.Operator
	default:
		return errors.New("empty record")
	}
	return nil
}
