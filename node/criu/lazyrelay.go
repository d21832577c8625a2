package criu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// lazyFinished is what a restore sends its lazy-pages daemon once every process is restored (CRIU's
// LAZY_PAGES_RESTORE_FINISHED, "RSTF"): from then on the daemon copies the memory nobody asked for yet.
const lazyFinished = 0x52535446

// daemonSocket is where DetachSocket moves a lazy-pages daemon's socket, in its work directory.
const daemonSocket = "lazy-pages-daemon.socket"

// ErrLazyProtocol is returned when the restore side of the lazy-pages socket sends something CRIU would not.
var ErrLazyProtocol = errors.New("unexpected message on the lazy-pages socket")

// LazyRelay stands between a lazy restore and its lazy-pages daemon on the socket they share. It passes on
// what the restore sends (each restored process's pid and userfaultfd) as it comes, and holds back the
// restore's "finished" until hold has passed or Release is called: until then the daemon serves only the
// page faults of the processes it was given and copies nothing else. CRIU's daemon starts copying all the
// remaining memory the moment the restore ends; for a clone that is hundreds of megabytes of copying while
// the clone starts answering, and for several clones started together, each one's copying takes the cores
// from the others' restores and first requests.
//
// The relay must live as long as the restored processes may fault before the daemon was told "finished":
// a daemon that loses the connection before that gives up, and the faults of the processes it served fall on
// empty memory. A restore's shim (which lives as long as its container) runs it.
type LazyRelay struct {
	ln      *net.UnixListener
	daemon  string
	hold    time.Duration
	release chan struct{}
	once    sync.Once
	done    chan error
}

// DetachSocket moves the daemon's socket aside (its listening socket stays where it is open) so that a
// LazyRelay can listen in its place, and returns the socket's new path for the relay to connect to.
func (lp *LazyPages) DetachSocket() (string, error) {
	to := filepath.Join(filepath.Dir(lp.socket), daemonSocket)
	if err := os.Rename(lp.socket, to); err != nil {
		return "", fmt.Errorf("moving the lazy-pages daemon's socket aside: %w", err)
	}
	lp.socket = to
	return to, nil
}

// ListenLazyRelay listens where a restore whose CRIU work directory is workDir looks for its lazy-pages
// daemon, and relays to the daemon listening at daemon (DetachSocket's path). The relay serves one restore;
// Close stops it if the restore never came.
func ListenLazyRelay(workDir, daemon string, hold time.Duration) (*LazyRelay, error) {
	path := filepath.Join(workDir, lazySocket)
	_ = os.Remove(path)
	var ln *net.UnixListener
	err := inDir(path, func(short string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: short, Net: "unix"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening for the restore on the lazy-pages socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // removed by name below: the /proc path it was bound by is not the file's
	r := &LazyRelay{ln: ln, daemon: daemon, hold: hold, release: make(chan struct{}), done: make(chan error, 1)}
	go func() { r.done <- r.serve(path) }()
	return r, nil
}

// Release lets the daemon copy the rest of the memory now (if the restore finished, or as soon as it does).
func (r *LazyRelay) Release() { r.once.Do(func() { close(r.release) }) }

// Close stops listening (a restore that failed before it connected) and ends the relay; it waits for the
// relay to hand on the restore's "finished" if it had one.
func (r *LazyRelay) Close() error {
	r.Release()
	_ = r.ln.Close()
	err := <-r.done
	r.done <- err
	return err
}

// Wait returns the relay's outcome once it ended (nil once the daemon was told "finished").
func (r *LazyRelay) Wait() error {
	err := <-r.done
	r.done <- err
	return err
}

func (r *LazyRelay) serve(path string) error {
	c, err := r.ln.AcceptUnix()
	_ = r.ln.Close()
	_ = os.Remove(path)
	if err != nil {
		return fmt.Errorf("no restore connected to the lazy-pages socket: %w", err)
	}
	defer c.Close()
	var d *net.UnixConn
	err = inDir(r.daemon, func(short string) error {
		var err error
		d, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: short, Net: "unix"})
		return err
	})
	if err != nil {
		return fmt.Errorf("connecting to the lazy-pages daemon: %w", err)
	}
	defer d.Close()
	if err := relayTasks(c, d); err != nil {
		return err
	}
	t := time.NewTimer(r.hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.release:
	}
	var fin [4]byte
	binary.NativeEndian.PutUint32(fin[:], lazyFinished)
	if _, err := d.Write(fin[:]); err != nil {
		return fmt.Errorf("telling the lazy-pages daemon the restore finished: %w", err)
	}
	return nil
}

// relayTasks passes on the restore's messages until its "finished": per restored process, its pid (a native
// int) and then, for a live one (a zombie's pid is negative), one byte that carries its userfaultfd.
func relayTasks(c, d *net.UnixConn) error {
	for {
		var b [4]byte
		if err := readExactly(c, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the restore closed the lazy-pages socket before it finished")
			}
			return err
		}
		v := binary.NativeEndian.Uint32(b[:])
		if v == lazyFinished {
			return nil
		}
		if _, err := d.Write(b[:]); err != nil {
			return fmt.Errorf("passing a pid to the lazy-pages daemon: %w", err)
		}
		if int32(v) <= 0 {
			continue
		}
		var one [1]byte
		oob := make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := c.ReadMsgUnix(one[:], oob)
		if err != nil {
			return fmt.Errorf("reading process %d's userfaultfd: %w", int32(v), err)
		}
		fds, perr := unixRights(oob[:oobn])
		if n != 1 || perr != nil || len(fds) != 1 {
			closeAll(fds)
			return fmt.Errorf("%w: process %d's userfaultfd: %d byte(s), %d descriptor(s)", ErrLazyProtocol, int32(v), n, len(fds))
		}
		_, _, err = d.WriteMsgUnix(one[:], unix.UnixRights(fds[0]), nil)
		closeAll(fds)
		if err != nil {
			return fmt.Errorf("passing process %d's userfaultfd to the lazy-pages daemon: %w", int32(v), err)
		}
	}
}

// readExactly fills b from c; a descriptor arriving with these bytes is a protocol error (and is closed).
func readExactly(c *net.UnixConn, b []byte) error {
	oob := make([]byte, unix.CmsgSpace(4*4))
	for got := 0; got < len(b); {
		n, oobn, _, _, err := c.ReadMsgUnix(b[got:], oob)
		if oobn > 0 {
			fds, _ := unixRights(oob[:oobn])
			closeAll(fds)
			return fmt.Errorf("%w: a descriptor with a pid", ErrLazyProtocol)
		}
		if n == 0 && err == nil {
			err = io.EOF
		}
		if err != nil {
			if got > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		got += n
	}
	return nil
}

func unixRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, f...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// inDir calls f with a path to the same file as path that fits a socket address however deep path is: the
// file's directory through an open descriptor of it (/proc/self/fd/N/NAME).
func inDir(path string, f func(short string) error) error {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return f("/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path))
}
