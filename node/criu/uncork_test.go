package criu

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sockopt(t *testing.T, c *net.TCPConn, opt int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// A corked client's last few bytes reach the server at once after UncorkPeer, not after the kernel's timer.
func TestUncorkPeer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pidfd_getfd needs root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cc := client.(*net.TCPConn)
	rc, _ := cc.SyscallConn()
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if sockopt(t, cc, unix.TCP_CORK) == 0 {
		t.Fatal("the client is not corked")
	}
	if err := UncorkPeer(s.(*net.TCPConn)); err != nil {
		t.Fatalf("UncorkPeer: %v", err)
	}
	if v := sockopt(t, cc, unix.TCP_CORK); v != 0 {
		t.Fatalf("TCP_CORK is %d after UncorkPeer", v)
	}
	start := time.Now()
	if _, err := client.Write([]byte("close")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Read(buf); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("a small write took %v to arrive after uncorking", d)
	}
}

func TestUncorkPeerNotLoopback(t *testing.T) {
	if _, err := socketInode("/proc/self/net/tcp", netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")); !errors.Is(err, ErrPeerNotFound) {
		t.Fatalf("got %v, want ErrPeerNotFound", err)
	}
}

func TestUncorkPeerIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback")
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := UncorkPeer(s.(*net.TCPConn)); !errors.Is(err, ErrPeerNotFound) {
		t.Fatalf("got %v, want ErrPeerNotFound", err)
	}
}

func TestProcAddr(t *testing.T) {
	if got := procAddr(netip.MustParseAddrPort("127.0.0.1:8080")); got != "0100007F:1F90" {
		t.Fatalf("procAddr = %s", got)
	}
}
