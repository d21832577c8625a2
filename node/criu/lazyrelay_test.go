package criu

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeDaemon listens where a detached lazy-pages daemon would and hands over the one connection it accepts.
func fakeDaemon(t *testing.T, dir string) (string, <-chan *net.UnixConn) {
	t.Helper()
	path := filepath.Join(dir, daemonSocket)
	var ln *net.UnixListener
	err := inDir(path, func(short string) (err error) {
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // bound through a descriptor that is closed by then
	t.Cleanup(func() { ln.Close() })
	ch := make(chan *net.UnixConn, 1)
	go func() {
		c, err := ln.AcceptUnix()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
		close(ch)
	}()
	return path, ch
}

// relayIn starts a relay listening in dir for a restore, with a fake daemon beside it whose connection from
// the relay is handed over.
func relayIn(t *testing.T, dir string, hold time.Duration) (*LazyRelay, <-chan *net.UnixConn) {
	t.Helper()
	daemonPath, accepted := fakeDaemon(t, dir)
	r, err := ListenLazyRelay(dir, daemonPath, hold)
	if err != nil {
		t.Fatal(err)
	}
	return r, accepted
}

// restoreSide connects to the relay in work as CRIU's restore does.
func restoreSide(t *testing.T, work string) *net.UnixConn {
	t.Helper()
	var c *net.UnixConn
	err := inDir(filepath.Join(work, lazySocket), func(short string) (err error) {
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: short, Net: "unix"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendPid(t *testing.T, c *net.UnixConn, pid int32) {
	t.Helper()
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(pid))
	if _, err := c.Write(b[:]); err != nil {
		t.Fatal(err)
	}
}

func sendFd(t *testing.T, c *net.UnixConn, f *os.File) {
	t.Helper()
	if _, _, err := c.WriteMsgUnix([]byte{0}, unix.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
}

// recvPid reads a pid as CRIU's daemon does; within is how long it may take.
func recvPid(t *testing.T, c *net.UnixConn, within time.Duration) (int32, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	var b [4]byte
	if err := readExactly(c, b[:]); err != nil {
		return 0, err
	}
	return int32(binary.NativeEndian.Uint32(b[:])), nil
}

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestLazyRelay: the relay passes on pids and descriptors as CRIU's restore sends them (a live process's,
// a zombie's), holds back "finished" until its hold passes or it is released, and passes nothing on from a
// restore that broke off or broke the protocol; it works in directories too deep for a socket address.
func TestLazyRelay(t *testing.T) {
	deep := t.TempDir()
	for len(deep) < 120 {
		deep = filepath.Join(deep, "a-rather-long-directory-name")
	}
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		hold    time.Duration
		release bool
	}{
		{"held until released", t.TempDir(), time.Minute, true},
		{"held for its time", t.TempDir(), 300 * time.Millisecond, false},
		{"in a deep directory", deep, 200 * time.Millisecond, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, accepted := relayIn(t, tc.dir, tc.hold)
			rs := restoreSide(t, tc.dir)
			f, err := os.CreateTemp(t.TempDir(), "uffd")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sendPid(t, rs, 1)
			sendFd(t, rs, f)
			sendPid(t, rs, -7) // a zombie: no descriptor follows
			start := time.Now()
			var fin [4]byte
			binary.NativeEndian.PutUint32(fin[:], lazyFinished)
			if _, err := rs.Write(fin[:]); err != nil {
				t.Fatal(err)
			}
			rs.Close() // CRIU closes its end once it said "finished"
			d := <-accepted
			if d == nil {
				t.Fatal("the relay did not connect to the daemon")
			}
			if pid, err := recvPid(t, d, 5*time.Second); err != nil || pid != 1 {
				t.Fatalf("first pid %d (%v), want 1", pid, err)
			}
			var one [1]byte
			oob := make([]byte, unix.CmsgSpace(4))
			_ = d.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, oobn, _, _, err := d.ReadMsgUnix(one[:], oob)
			fds, _ := unixRights(oob[:oobn])
			if err != nil || n != 1 || len(fds) != 1 {
				t.Fatalf("the descriptor's message: %d byte(s), %d descriptor(s), %v", n, len(fds), err)
			}
			if inode(t, fds[0]) != inode(t, int(f.Fd())) {
				t.Fatal("the daemon got another file than the restore sent")
			}
			closeAll(fds)
			if pid, err := recvPid(t, d, 5*time.Second); err != nil || pid != -7 {
				t.Fatalf("zombie's pid %d (%v), want -7", pid, err)
			}
			if tc.release {
				if _, err := recvPid(t, d, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("before the release the daemon read %v, want nothing", err)
				}
				r.Release()
			}
			got, err := recvPid(t, d, 5*time.Second)
			if err != nil || uint32(got) != lazyFinished {
				t.Fatalf("the daemon got %#x (%v), want \"finished\"", uint32(got), err)
			}
			if !tc.release && time.Since(start) < tc.hold {
				t.Fatalf("\"finished\" came after %s, before the hold of %s", time.Since(start), tc.hold)
			}
			if err := r.Wait(); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if _, err := os.Stat(filepath.Join(tc.dir, lazySocket)); !os.IsNotExist(err) {
				t.Fatalf("the relay's socket is still there: %v", err)
			}
		})
	}

	t.Run("a restore that breaks off", func(t *testing.T) {
		dir := t.TempDir()
		r, accepted := relayIn(t, dir, time.Minute)
		rs := restoreSide(t, dir)
		sendPid(t, rs, 5)
		rs.Close() // died before its descriptor
		d := <-accepted
		if pid, err := recvPid(t, d, 5*time.Second); err != nil || pid != 5 {
			t.Fatalf("pid %d (%v), want 5", pid, err)
		}
		if _, err := recvPid(t, d, 5*time.Second); err == nil {
			t.Fatal("the daemon got more than the pid")
		}
		if err := r.Wait(); err == nil {
			t.Fatal("Wait: no error for a restore that broke off")
		}
	})

	t.Run("a descriptor with a pid", func(t *testing.T) {
		dir := t.TempDir()
		r, accepted := relayIn(t, dir, time.Minute)
		rs := restoreSide(t, dir)
		if _, _, err := rs.WriteMsgUnix([]byte{1, 0, 0, 0}, unix.UnixRights(int(os.Stdin.Fd())), nil); err != nil {
			t.Fatal(err)
		}
		if err := r.Wait(); !errors.Is(err, ErrLazyProtocol) {
			t.Fatalf("Wait: %v, want ErrLazyProtocol", err)
		}
		d := <-accepted
		if _, err := recvPid(t, d, time.Second); err == nil {
			t.Fatal("the daemon got something")
		}
	})

	t.Run("no restore came", func(t *testing.T) {
		dir := t.TempDir()
		r, _ := relayIn(t, dir, time.Minute)
		done := make(chan error, 1)
		go func() { done <- r.Close() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("Close: no error though no restore came")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close waited for a restore")
		}
	})
}

// TestLazyRelayHoldsCRIUsFill: a real lazy restore through the relay. While the relay holds the restore's
// "finished", the daemon only serves faults and stays (without the relay it copies the rest and exits at
// once for a process this small); released, it copies the rest and exits, and the process runs on.
func TestLazyRelayHoldsCRIUsFill(t *testing.T) {
	requireCRIU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	images, work := filepath.Join(dir, "images"), filepath.Join(dir, "work")
	for _, d := range []string{images, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pid := startVictim(ctx, t)
	if out, err := exec.CommandContext(ctx, "criu", "dump", "-t", strconv.Itoa(pid), "-D", images, "-o", "dump.log", "-v4").CombinedOutput(); err != nil {
		t.Fatalf("criu dump: %v\n%s", err, out)
	}
	lp, err := StartLazyPages(ctx, Exec{}, images, work)
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Stop()
	daemon, err := lp.DetachSocket()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ListenLazyRelay(work, daemon, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	restored := lazyRestore(ctx, t, images, work)
	time.Sleep(500 * time.Millisecond)
	if lp.Exited() {
		t.Fatalf("the daemon exited while the relay held the restore's end; see %s", lp.log)
	}
	runsOn(t, restored, "while held")
	// Its log, read now as if the daemon had been killed here, says that pages were still missing.
	if err := LazyLogFileComplete(lp.Log()); !errors.Is(err, ErrLazyIncomplete) {
		t.Fatalf("the log of a daemon still holding pages back reads as %v, want ErrLazyIncomplete", err)
	}
	r.Release()
	if err := lp.Wait(ctx); err != nil {
		t.Fatalf("the daemon did not serve every page once released: %v", err)
	}
	if err := r.Wait(); err != nil {
		t.Fatalf("the relay: %v", err)
	}
	if err := LazyLogFileComplete(lp.Log()); err != nil {
		log, _ := os.ReadFile(lp.log)
		t.Fatalf("the log of a daemon that served every page reads as %v:\n%s", err, lastLines(string(log), 10))
	}
	runsOn(t, restored, "after the copy")
}
