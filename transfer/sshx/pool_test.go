package sshx

import (
	"context"
	"io"
	"testing"
	"time"
)

func TestPoolReconnectsAfterRestart(t *testing.T) {
	ca := newTestCA(t)
	id := newTestIdentity(t, ca, "n1")
	srv, addr := startServer(t, id, "", nil)
	srv.Handle("echo", []string{RoleAgent}, echoHandler)
	pool := NewPool(&Dialer{Identity: newTestIdentity(t, ca, "n2"), KeepAlive: 200 * time.Millisecond})
	defer pool.Close()

	ping := func() {
		t.Helper()
		c, err := pool.Open(testContext(t), addr, "echo", nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		c.(*Channel).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "ping" {
			t.Fatalf("echo = %q, %v", b, err)
		}
	}
	ping()
	first, _ := pool.Conn(testContext(t), addr)

	srv.Close()
	srv2, _ := startServer(t, id, addr, nil)
	srv2.Handle("echo", []string{RoleAgent}, echoHandler)
	ping()
	second, _ := pool.Conn(testContext(t), addr)
	if first == second {
		t.Fatal("pool kept the connection to the stopped server")
	}

	// Without waiting for keepalives: a pooled connection that broke
	// silently is replaced on the next Open.
	srv2.Close()
	srv3, _ := startServer(t, id, addr, nil)
	srv3.Handle("echo", []string{RoleAgent}, echoHandler)
	ping()
}

func TestPoolSlotsAreSeparateConnections(t *testing.T) {
	ca := newTestCA(t)
	srv, addr := startServer(t, newTestIdentity(t, ca, "target"), "", nil)
	srv.Handle(ChannelStream, []string{RoleAgent}, sinkHandler)
	pool := NewPool(&Dialer{Identity: newTestIdentity(t, ca, "source")})
	defer pool.Close()
	ctx := context.Background()
	c0, err := pool.Conn(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*Conn]bool{c0: true}
	for slot := 1; slot < 3; slot++ {
		ch, err := pool.OpenOn(ctx, addr, slot, ChannelStream, nil)
		if err != nil {
			t.Fatal(err)
		}
		ch.Close()
		c, err := pool.conn(ctx, addr, slot)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c] {
			t.Fatalf("slot %d shares a connection", slot)
		}
		seen[c] = true
	}
	if again, _ := pool.conn(ctx, addr, 2); !seen[again] {
		t.Fatal("slot 2 dialled again instead of reusing its connection")
	}
	if _, err := pool.OpenOn(ctx, addr, MaxSlots, ChannelStream, nil); err == nil {
		t.Fatal("a slot beyond MaxSlots was accepted")
	}
}
