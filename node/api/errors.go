package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ferryhq/ferry/node"
)

// ErrUnreachable means the client could not reach an agent.
var ErrUnreachable = errors.New("cannot reach the ferry agent")

// Error codes on the wire.
const (
	CodeNotFound    = "not_found"
	CodeExists      = "exists"
	CodeInvalid     = "invalid"
	CodeState       = "wrong_state"
	CodeUnavailable = "unavailable"
	CodeRejected    = "rejected"
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
}

// ErrorBody is the JSON form of an error.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

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
