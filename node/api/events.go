package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Event types in a stream.
const (
	EventProgress = "progress"
	EventLog      = "log"
	EventStdout   = "stdout"
	EventStderr   = "stderr"
	EventResult   = "result"
	EventError    = "error"
)

// Event is one line of a streamed answer.
type Event struct {
	Type  string          `json:"type"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *ErrorBody      `json:"error,omitempty"`
}

// maxEventBytes bounds one event line read by the client.
const maxEventBytes = 4 << 20

// eventWriter writes events and flushes each one. Safe for use from one goroutine at a time per call (guarded
// by the caller: handlers write from the request goroutine or through a mutex).
type eventWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	e  *json.Encoder
}

func newEventWriter(w http.ResponseWriter) *eventWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &eventWriter{w: w, rc: http.NewResponseController(w), e: json.NewEncoder(w)}
}

func (ew *eventWriter) send(typ string, v any) error {
	ev := Event{Type: typ}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		ev.Data = b
	}
	if err := ew.e.Encode(ev); err != nil {
		return err
	}
	return ew.rc.Flush()
}

func (ew *eventWriter) fail(err error) {
	b, _ := encodeError(err)
	_ = ew.e.Encode(Event{Type: EventError, Error: &b})
	_ = ew.rc.Flush()
}

// readEvents calls fn for each event until a result (decoded into result) or an error event.
func readEvents(r io.Reader, fn func(Event) error, result any) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readLine(br)
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("the agent closed the stream before the operation ended (see the agent's log)")
			}
			return err
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("bad event from the agent: %w", err)
		}
		switch ev.Type {
		case EventError:
			if ev.Error == nil {
				return decodeError(ErrorBody{})
			}
			return decodeError(*ev.Error)
		case EventResult:
			if result != nil && len(ev.Data) > 0 {
				return json.Unmarshal(ev.Data, result)
			}
			return nil
		default:
			if fn != nil {
				if err := fn(ev); err != nil {
					return err
				}
			}
		}
	}
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxEventBytes {
			return nil, fmt.Errorf("an event from the agent is larger than %d bytes", maxEventBytes)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// EventWriter streams events to a client (for long operations served outside this package). Its methods
// must be called from one goroutine at a time.
type EventWriter struct{ ew *eventWriter }

// NewEventWriter starts an event stream answer on w.
func NewEventWriter(w http.ResponseWriter) *EventWriter { return &EventWriter{newEventWriter(w)} }

// Send writes one event of type typ carrying v.
func (e *EventWriter) Send(typ string, v any) error { return e.ew.send(typ, v) }

// Fail ends the stream with an error event.
func (e *EventWriter) Fail(err error) { e.ew.fail(err) }
