package node

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
)

// An incoming migration that is neither restored nor aborted (its source died or was cut off) is removed
// after the timeout, and a closing agent removes those it still holds.
func TestIncomingMigrationExpires(t *testing.T) {
	tests := []struct {
		name  string
		ttl   time.Duration
		close bool
	}{
		{"abandoned by its source", 100 * time.Millisecond, false},
		{"held when the agent closes", time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cancel := context.WithCancel(context.Background())
			a := &Agent{cfg: Config{Name: "vg-2", DataDir: t.TempDir(), IncomingTimeout: tt.ttl}, log: slog.Default(), cancel: cancel,
				features: &criu.Features{CheckOK: true}}
			id := checkpoint.NewID(time.Now())
			in, err := a.PrepareIncoming(context.Background(), id, "np", false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(in.Dir); err != nil {
				t.Fatal(err)
			}
			if tt.close {
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				time.Sleep(3 * tt.ttl)
			}
			if _, err := a.Incoming(id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the incoming migration is still held: %v", err)
			}
			if _, err := os.Stat(in.Dir); !os.IsNotExist(err) {
				t.Fatalf("what arrived is left at %s: %v", in.Dir, err)
			}
		})
	}
}

// A migration aborted while its restore runs is marked, so that the restore removes what it restored when it
// ends; an abort of another migration marks nothing, and the mark goes with the restore.
func TestAbortWhileRestoring(t *testing.T) {
	a := &Agent{cfg: Config{Name: "vg-2", DataDir: t.TempDir()}, log: slog.Default()}
	first, second := a.restoring("m1"), a.restoring("m2")
	a.AbortIncoming("m2")
	a.AbortIncoming("m3")
	if first() {
		t.Fatal("m1 was not aborted, but its restore is told it was")
	}
	if !second() {
		t.Fatal("m2 was aborted while it restored, but its restore is not told")
	}
	a.AbortIncoming("m1")
	if len(a.incoming.restoring) != 0 {
		t.Fatalf("marks left after the restores ended: %v", a.incoming.restoring)
	}
}
