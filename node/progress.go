package node

import "time"

// Progress is one step of a long operation, for a person watching.
type Progress struct {
	Phase   string        `json:"phase"`
	Detail  string        `json:"detail,omitempty"`
	Bytes   int64         `json:"bytes,omitempty"`
	Total   int64         `json:"total,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
}

// ProgressFunc receives progress; it must not block for long. Nil is allowed.
type ProgressFunc func(Progress)

type phaser struct {
	fn    ProgressFunc
	start time.Time
}

func newPhaser(fn ProgressFunc) *phaser { return &phaser{fn: fn, start: time.Now()} }

func (p *phaser) phase(name, detail string) {
	if p.fn != nil {
		p.fn(Progress{Phase: name, Detail: detail, Elapsed: time.Since(p.start)})
	}
}

// PhaseTime says when a step of an operation began, counted from the operation's start.
type PhaseTime struct {
	Phase string        `json:"phase"`
	At    time.Duration `json:"at"`
}
