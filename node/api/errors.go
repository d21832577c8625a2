package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ferryhq/ferry/node"
)

// Errors of the API layer itself.
var (
	// ErrUnreachable means the client could not reach an agent.
	ErrUnreachable = errors.New("cannot reach the ferry agent")
	// ErrForbidden means the caller's role does not allow the request (a viewer asked for a change).
	ErrForbidden = errors.New("forbidden")
	// ErrNodeUnreachable means the agent could not reach the node that holds what was asked for.
	ErrNodeUnreachable = errors.New("node unreachable")
)

// Error codes on the wire.
const (
	CodeNotFound    = "not_found"
	CodeExists      = "exists"
	CodeInvalid     = "invalid"
	CodeState       = "wrong_state"
	CodeUnavailable = "unavailable"
	CodeRejected    = "rejected"
	CodeForbidden   = "forbidden"
	CodeNodeDown    = "node_unreachable"
	CodeInternal    = "internal"
)

var codes = []struct {
	code   string
	err    error
	status int
}{
	{CodeNotFound, node.ErrNotFound, http.StatusNotFound},
	{CodeExists, node.ErrExists, http.StatusConflict},
	{CodeInvalid, node.ErrInvalid, http.StatusBadRequest},
	{CodeState, node.ErrState, http.StatusConflict},
	{CodeUnavailable, node.ErrUnavailable, http.StatusServiceUnavailable},
	{CodeRejected, node.ErrRejected, http.StatusUnprocessableEntity},
	{CodeForbidden, ErrForbidden, http.StatusForbidden},
	{CodeNodeDown, ErrNodeUnreachable, http.StatusBadGateway},
}

// ErrorBody is the JSON form of an error.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// EncodeError returns the wire form of err and its HTTP status.
func EncodeError(err error) (ErrorBody, int) { return encodeError(err) }

// WriteError writes err as a JSON error answer.
func WriteError(w http.ResponseWriter, err error) { writeErr(w, err) }

// WriteJSON writes v as a JSON answer with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

func encodeError(err error) (ErrorBody, int) {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return ErrorBody{Error: err.Error(), Code: c.code}, c.status
		}
	}
	return ErrorBody{Error: err.Error(), Code: CodeInternal}, http.StatusInternalServerError
}

// remoteError is an error received from an agent; errors.Is matches the sentinel of its code.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// DecodeError turns a wire error back into an error that errors.Is matches against its sentinel.
func DecodeError(b ErrorBody) error { return decodeError(b) }

func decodeError(b ErrorBody) error {
	for _, c := range codes {
		if c.code == b.Code {
			return &remoteError{msg: b.Error, sentinel: c.err}
		}
	}
	if b.Error == "" {
		b.Error = "the agent failed without saying why"
	}
	return &remoteError{msg: b.Error}
}

func unreachable(addr string, err error) error {
	return fmt.Errorf("%w at %s: %v; is `ferry agent` running there (and are you root, for the local socket)?", ErrUnreachable, addr, err)
}
