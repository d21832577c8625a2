package sshx

import (
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// startEcho runs a TCP echo server on 127.0.0.1 and returns its port.
func startEcho(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// roundTrip writes n pseudo-random bytes into c while reading them back,
// and reports whether the SHA-256 of both sides agree.
func roundTrip(t *testing.T, c net.Conn, n int64) {
	t.Helper()
	src := io.LimitReader(rand.NewChaCha8([32]byte{7}), n)
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.TeeReader(src, sent))
		if cw, ok := c.(closeWriter); ok {
			cw.CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	m, err := io.Copy(got, c)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if m != n || string(got.Sum(nil)) != string(sent.Sum(nil)) {
		t.Fatalf("got %d bytes, want %d; sha256 equal: %v", m, n, string(got.Sum(nil)) == string(sent.Sum(nil)))
	}
}

func TestTunnel(t *testing.T) {
	ca := newTestCA(t)
	srv, addr := startServer(t, newTestIdentity(t, ca, "target"), "", nil)
	port := startEcho(t)
	pool := NewPool(&Dialer{Identity: newTestIdentity(t, ca, "source")})
	defer pool.Close()
	ctx := testContext(t)

	if _, err := pool.Tunnel(ctx, addr, port); !errors.Is(err, ErrTunnelRefused) {
		t.Fatalf("before AllowTunnel: err = %v, want ErrTunnelRefused", err)
	}
	release := srv.AllowTunnel(port)

	t.Run("64 MiB through ForwardTunnel", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go pool.ForwardTunnel(ctx, ln, addr, port)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, 64<<20)
	})
	t.Run("direct channel", func(t *testing.T) {
		c, err := pool.Tunnel(ctx, addr, port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, 1<<20)
	})
	t.Run("port not allowed", func(t *testing.T) {
		_, err := pool.Tunnel(ctx, addr, port+1)
		if !errors.Is(err, ErrTunnelRefused) {
			t.Fatalf("err = %v, want ErrTunnelRefused", err)
		}
		t.Log(err)
	})
	t.Run("allowed but nothing listens", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := l.Addr().(*net.TCPAddr).Port
		l.Close()
		defer srv.AllowTunnel(dead)()
		if _, err := pool.Tunnel(ctx, addr, dead); !errors.Is(err, ErrTunnelRefused) {
			t.Fatalf("err = %v, want ErrTunnelRefused", err)
		}
	})

	release()
	release() // idempotent
	if _, err := pool.Tunnel(ctx, addr, port); !errors.Is(err, ErrTunnelRefused) {
		t.Fatalf("after release: err = %v, want ErrTunnelRefused", err)
	}
}

func TestAllowTunnelNests(t *testing.T) {
	srv, _ := startServer(t, newTestIdentity(t, newTestCA(t), "n1"), "", nil)
	r1, r2 := srv.AllowTunnel(5000), srv.AllowTunnel(5000)
	r1()
	if !srv.tunnelAllowed(5000) {
		t.Fatal("port closed while a holder remains")
	}
	r2()
	if srv.tunnelAllowed(5000) {
		t.Fatal("port open after every holder released it")
	}
}
