package criu

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPeerNotFound means no process on this host holds the other end of a loopback connection.
var ErrPeerNotFound = errors.New("no local process holds the other end of the connection")

// UncorkPeer clears TCP_CORK (and sets TCP_NODELAY) on the socket at the other end of c, a connection that
// a local process, CRIU, opened to a listener of this process on loopback.
//
// Why: CRIU corks its page-server connection when it opens it and never uncorks it. Its last message, the
// close request it then waits an answer for, is a few bytes: corked, the kernel holds it until its 200 ms
// timer fires, and the container, frozen, waits with it. Uncorked, every message leaves at once (the pages
// themselves go in large writes either way). The socket is reached through pidfd_getfd; it needs root (or
// ptrace rights on CRIU). On any failure nothing was changed and CRIU goes on as before, just slower.
func UncorkPeer(c *net.TCPConn) error {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || !remote.IP.IsLoopback() || remote.IP.To4() == nil || local.IP.To4() == nil {
		return fmt.Errorf("%w: %v is not on IPv4 loopback", ErrPeerNotFound, c.RemoteAddr())
	}
	// The peer's socket: local address = our remote, remote address = our local.
	inode, err := socketInode("/proc/self/net/tcp", remote.AddrPort(), local.AddrPort())
	if err != nil {
		return err
	}
	pid, fd, err := findSocket(inode)
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	sfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd %d/%d: %w", pid, fd, err)
	}
	defer unix.Close(sfd)
	if err := unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("TCP_NODELAY: %w", err)
	}
	if err := unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_CORK, 0); err != nil {
		return fmt.Errorf("TCP_CORK: %w", err)
	}
	return nil
}

// socketInode finds, in a /proc/net/tcp table, the inode of the socket from local to remote (IPv4).
func socketInode(table string, local, remote netip.AddrPort) (uint64, error) {
	f, err := os.Open(table)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	want := procAddr(local) + " " + procAddr(remote)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1]+" "+fs[2] != want {
			continue
		}
		return strconv.ParseUint(fs[9], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%w: no socket %v -> %v", ErrPeerNotFound, local, remote)
}

// procAddr writes an IPv4 address and port as /proc/net/tcp does (little-endian hex address, hex port); ap
// must be IPv4 (or IPv4-mapped).
func procAddr(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
}

// findSocket finds a process and descriptor that hold the socket with this inode.
func findSocket(inode uint64) (int, int, error) {
	link := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, d := range fds {
			if l, err := os.Readlink(filepath.Join(dir, d.Name())); err == nil && l == link {
				fd, _ := strconv.Atoi(d.Name())
				return pid, fd, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("%w: socket inode %d", ErrPeerNotFound, inode)
}
