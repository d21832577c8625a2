package sshx

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestChannelReadDeadline(t *testing.T) {
	ca := newTestCA(t)
	srv, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", nil)
	srv.Handle("late", []string{RoleAgent}, func(_ context.Context, ch *Channel) {
		time.Sleep(300 * time.Millisecond)
		ch.Write([]byte("hello"))
		io.Copy(io.Discard, ch)
	})
	pool := NewPool(&Dialer{Identity: newTestIdentity(t, ca, "n2")})
	defer pool.Close()
	c, err := pool.Open(testContext(t), addr, "late", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16)

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v, want ErrDeadlineExceeded", err)
	}
	// A deadline in the past wakes a blocked Read (http.Server relies on it).
	done := make(chan error, 1)
	c.SetReadDeadline(time.Time{})
	go func() { _, err := c.Read(buf); done <- err }()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("woken Read = %v, want ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetReadDeadline did not wake a blocked Read")
	}
	// The data that arrives later is not lost.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(c, buf, 5)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read after timeouts = %q, %v; want hello", buf[:n], err)
	}
}

func TestChannelWriteDeadline(t *testing.T) {
	ca := newTestCA(t)
	srv, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", nil)
	block := make(chan struct{})
	defer close(block)
	srv.Handle("stuck", []string{RoleAgent}, func(_ context.Context, ch *Channel) { <-block })
	pool := NewPool(&Dialer{Identity: newTestIdentity(t, ca, "n2")})
	defer pool.Close()
	c, err := pool.Open(testContext(t), addr, "stuck", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.Write(make([]byte, 8<<20)) // more than the 2 MiB window
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %v, want ErrDeadlineExceeded", err)
	}
}
