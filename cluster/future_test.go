package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stuckFuture is a raft future that is never answered, as one queued when
// raft shut down.
type stuckFuture struct{ answer chan error }

func (f stuckFuture) Error() error { return <-f.answer }

func TestWaitFuture(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name   string
		answer error // sent to the future unless stuck
		stuck  bool
		want   error
	}{
		{name: "answered", want: nil},
		{name: "answered with an error", answer: boom, want: boom},
		{name: "never answered: the context ends the wait", stuck: true, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := stuckFuture{answer: make(chan error, 1)}
			if !tt.stuck {
				f.answer <- tt.answer
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- waitFuture(ctx, f) }()
			select {
			case err := <-done:
				if !errors.Is(err, tt.want) && err != tt.want {
					t.Fatalf("waitFuture = %v, want %v", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waitFuture did not return after its context ended")
			}
		})
	}
}
