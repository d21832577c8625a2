package cluster

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Error is the error type of this package. Every error a command, the FSM or
// the scheduler returns is an *Error (possibly wrapped) whose Code names one of
// the sentinels below and whose Message names the thing and the fix.
//
// Errors cross process boundaries: a follower forwards a write to the leader
// and gets the leader's error back. EncodeError turns any error into a
// WireError (code + message) and DecodeError turns it back into an *Error for
// which errors.Is(err, ErrUnknownNode) holds on the receiving side, because Is
// compares codes, not pointers.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same code, so errors.Is
// matches a sentinel against a specific error built from it, in this process or
// after a round trip through EncodeError/DecodeError.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinel errors. Test for them with errors.Is; the errors actually returned
// carry a specific message (see errorf) but the same code.
var (
	// ErrUnknownNode: a command or placement names a node that is not in the cluster state.
	ErrUnknownNode = sentinel("unknown_node", "unknown node; list the nodes with 'ferry node ls'")
	// ErrUnknownContainer: a command names a container that is not in the cluster state.
	ErrUnknownContainer = sentinel("unknown_container", "unknown container; list the containers with 'ferry ps'")
	// ErrUnknownImage: a command names an image that is not in the cluster state.
	ErrUnknownImage = sentinel("unknown_image", "unknown image; list the images with 'ferry image ls'")
	// ErrUnknownSnapshot: a command names a snapshot ID that is not in the cluster state.
	ErrUnknownSnapshot = sentinel("unknown_snapshot", "unknown snapshot; list them with 'ferry snapshot ls'")
	// ErrUnknownJob: a command names a migration or drain job that is not in the cluster state.
	ErrUnknownJob = sentinel("unknown_job", "unknown job")
	// ErrUnknownOperator: a command names an operator ID that is not in the cluster state.
	ErrUnknownOperator = sentinel("unknown_operator", "unknown operator; list them with 'ferry operator ls'")
	// ErrExists: a create command names something that already exists.
	ErrExists = sentinel("exists", "already exists; choose another name or remove the old one first")
	// ErrInvalid: a command is malformed (missing field, bad enum value, undecodable payload).
	ErrInvalid = sentinel("invalid", "invalid command")
	// ErrConflict: a conditional update saw a different generation than it expected; re-read and retry.
	ErrConflict = sentinel("conflict", "the object changed since it was read; re-read it and retry")
	// ErrBusy: the object already has an active migration or drain job; wait for it or cancel it.
	ErrBusy = sentinel("busy", "an operation is already in progress; wait for it to finish")
	// ErrInvalidTransition: a job update moves a job out of a final state or to an unknown state.
	ErrInvalidTransition = sentinel("invalid_transition", "invalid job state transition")
	// ErrNodeInUse: a node still holds containers and cannot be removed without force.
	ErrNodeInUse = sentinel("node_in_use", "node still has containers; drain it first or remove it with force")
	// ErrNodeUnavailable: a pinned node is suspect, dead or has left.
	ErrNodeUnavailable = sentinel("node_unavailable", "node is not alive; choose another node")
	// ErrNodeDraining: a pinned node is not eligible for new work (draining or undrained by an operator).
	ErrNodeDraining = sentinel("node_draining", "node is draining; choose another target or undrain it")
	// ErrNodeMaintenance: a pinned node is in maintenance.
	ErrNodeMaintenance = sentinel("node_maintenance", "node is in maintenance; choose another target or turn maintenance off")
	// ErrNoCapacity: no eligible node has the memory a placement asks for.
	ErrNoCapacity = sentinel("no_capacity", "no node has enough free memory; free some or add a node")
	// ErrNoLeader: the cluster has no leader (no quorum); wait, or check that a majority of agents run.
	ErrNoLeader = sentinel("no_leader", "the cluster has no leader; check that a majority of agents are running")
	// ErrNotLeader: a leader-only call reached a follower; send it to the leader.
	ErrNotLeader = sentinel("not_leader", "this agent is not the leader; send the request to the leader")
	// ErrNoForwarder: a follower got a write but the Store has no Forwarder configured.
	ErrNoForwarder = sentinel("no_forwarder", "this agent cannot forward writes to the leader; configure a Forwarder")
	// ErrLeadershipLost: the leader lost leadership before the write committed; the write may or may not
	// have been applied, so read the state before retrying.
	ErrLeadershipLost = sentinel("leadership_lost", "leadership was lost during the write; check the state and retry")
	// ErrShutdown: the Store has been shut down.
	ErrShutdown = sentinel("shutdown", "the cluster store is shut down")
	// ErrInternal stands for an error that had no code when it was encoded.
	ErrInternal = sentinel("internal", "internal error")
)

var sentinels = map[string]*Error{}

func sentinel(code, msg string) *Error {
	e := &Error{Code: code, Message: msg}
	sentinels[code] = e
	return e
}

// errorf returns an error with kind's code and a specific message.
func errorf(kind *Error, format string, args ...any) error {
	return &Error{Code: kind.Code, Message: fmt.Sprintf(format, args...)}
}

// WireError is the encoded form of an error, for Apply responses that cross
// the forwarding boundary. A nil *WireError means success.
type WireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// EncodeError converts err to its wire form; nil stays nil. Errors without a
// code of this package (raft's ErrNotLeader and ErrLeadershipLost are mapped)
// get the code of ErrInternal and keep their message.
func EncodeError(err error) *WireError {
	if err == nil {
		return nil
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		return &WireError{Code: e.Code, Message: err.Error()}
	case errors.Is(err, raft.ErrNotLeader):
		return &WireError{Code: ErrNotLeader.Code, Message: err.Error()}
	case errors.Is(err, raft.ErrLeadershipLost):
		return &WireError{Code: ErrLeadershipLost.Code, Message: err.Error()}
	case errors.Is(err, raft.ErrRaftShutdown):
		return &WireError{Code: ErrShutdown.Code, Message: err.Error()}
	}
	return &WireError{Code: ErrInternal.Code, Message: err.Error()}
}

// DecodeError converts a wire error back; nil stays nil. The result matches
// its sentinel with errors.Is. Unknown codes (from a newer agent) keep their
// code and message and match nothing but themselves.
func DecodeError(w *WireError) error {
	if w == nil {
		return nil
	}
	return &Error{Code: w.Code, Message: w.Message}
}

// rejections are the errors with which the FSM or the scheduler refuses a command: a write that fails with one
// of them was not applied.
var rejections = []*Error{ErrUnknownNode, ErrUnknownContainer, ErrUnknownImage, ErrUnknownSnapshot, ErrUnknownJob,
	ErrUnknownOperator, ErrExists, ErrInvalid, ErrConflict, ErrBusy, ErrInvalidTransition, ErrNodeInUse,
	ErrNodeUnavailable, ErrNodeDraining, ErrNodeMaintenance, ErrNoCapacity}

// Rejected reports whether err says that a write was refused, and so was not applied. Any other error of a
// write (a timeout, a lost leadership, a forward whose answer was lost) leaves it open whether the write
// committed: read the state, or undo it, before acting on it.
func Rejected(err error) bool {
	for _, r := range rejections {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}
