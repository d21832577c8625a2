package node

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
)

// TestAwaitSnapshot: a clone sent with a snapshot's copy waits for the copy and no longer; it gives up when
// its caller does, or after the node's incoming timeout, and another snapshot's copy does not wake it for good.
func TestAwaitSnapshot(t *testing.T) {
	id, other := checkpoint.NewID(time.Now()), checkpoint.NewID(time.Now().Add(time.Second))
	newAgent := func(t *testing.T, timeout time.Duration) (*Agent, string) {
		dir := t.TempDir()
		return &Agent{cfg: Config{Name: "vg-2", DataDir: dir, IncomingTimeout: timeout}, log: slog.Default()}, dir
	}
	t.Run("held already", func(t *testing.T) {
		a, dir := newAgent(t, time.Minute)
		if err := a.AcceptSnapshot(context.Background(), id, receivedCopy(t, dir, id), nil); err != nil {
			t.Fatal(err)
		}
		if err := a.AwaitSnapshot(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the copy comes after another snapshot's", func(t *testing.T) {
		a, dir := newAgent(t, time.Minute)
		done := make(chan error, 1)
		go func() { done <- a.AwaitSnapshot(context.Background(), id) }()
		time.Sleep(50 * time.Millisecond)
		if err := a.AcceptSnapshot(context.Background(), other, receivedCopy(t, dir, other), nil); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			t.Fatalf("returned (%v) when another snapshot's copy came", err)
		case <-time.After(100 * time.Millisecond):
		}
		if err := a.AcceptSnapshot(context.Background(), id, receivedCopy(t, dir, id), nil); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("still waiting after the copy was accepted")
		}
	})
	t.Run("the caller gives up", func(t *testing.T) {
		a, _ := newAgent(t, time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := a.AwaitSnapshot(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
	t.Run("the incoming timeout bounds it", func(t *testing.T) {
		a, _ := newAgent(t, 100*time.Millisecond)
		start := time.Now()
		if err := a.AwaitSnapshot(context.Background(), id); !errors.Is(err, ErrNotFound) || time.Since(start) > 5*time.Second {
			t.Fatalf("err = %v after %s, want ErrNotFound after the timeout", err, time.Since(start))
		}
	})
}
