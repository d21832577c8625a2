package criu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PostCopyProbe is the outcome of ProbePostCopy.
type PostCopyProbe struct {
	// Works is true when a throw-away process was migrated with lazy pages end to end.
	Works bool `json:"works"`
	// Reason says what failed, in CRIU's own words where it gave some.
	Reason string `json:"reason,omitempty"`
	// Took is how long the probe ran.
	Took time.Duration `json:"took"`
}

// ProbePostCopy tries CRIU's post-copy path on a throw-away process, never on a container: a `sleep` in its own
// PID namespace and session is dumped with `criu dump --lazy-pages` (CRIU then serves its memory on a loopback
// port), a `criu lazy-pages --page-server` daemon fetches from that port, and `criu restore --lazy-pages`
// brings the process back from the non-memory images. Post-copy works here only if the dump ends well, which
// happens once every page has crossed. Everything the probe starts is killed and its files are removed
// before it returns. scratch is a directory the probe may use; it is emptied afterwards.
func ProbePostCopy(ctx context.Context, binary, scratch string) (*PostCopyProbe, error) {
	start := time.Now()
	if binary == "" {
		binary = "criu"
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	dir, err := os.MkdirTemp(scratch, "postcopy-probe-")
	if err != nil {
		return nil, fmt.Errorf("post-copy probe: %w", err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := &postCopyRun{bin: path, dir: dir, sleeper: -1}
	defer p.cleanup()
	why := p.run(ctx)
	return &PostCopyProbe{Works: why == "", Reason: why, Took: time.Since(start)}, nil
}

type postCopyRun struct {
	bin, dir  string
	victim    *exec.Cmd
	sleeper   int // a pid file descriptor of the victim's sleep (PID 1 of its namespace); -1: none
	daemons   []*exec.Cmd
	restored  int
	exitCodes chan error
}

func (p *postCopyRun) sub(name string) string { return filepath.Join(p.dir, name) }

// run returns "" when post-copy worked, or why it did not.
func (p *postCopyRun) run(ctx context.Context) string {
	for _, d := range []string{"src", "dst", "work"} {
		if err := os.Mkdir(p.sub(d), 0o700); err != nil {
			return err.Error()
		}
	}
	sleepPath, err := exec.LookPath("sleep")
	if err != nil {
		return "no sleep binary to probe with: " + err.Error()
	}
	// unshare -p -f makes sleep PID 1 of a new namespace (so the restore cannot collide with a PID in use);
	// setsid makes it its own session leader, which CRIU requires of a dumped tree.
	p.victim = exec.Command("unshare", "--pid", "--fork", "--kill-child", "setsid", sleepPath, "600")
	p.victim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.victim.Start(); err != nil {
		return "starting the throw-away process: " + err.Error()
	}
	pid, err := waitChild(ctx, p.victim.Process.Pid)
	if err != nil {
		return err.Error()
	}
	// Held from now on: the kill at the end reaches this process, never a later one with its pid.
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		p.sleeper = fd
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return err.Error()
	}
	ready, readyW, err := os.Pipe()
	if err != nil {
		return err.Error()
	}
	dump := exec.CommandContext(ctx, p.bin, "dump", "-t", strconv.Itoa(pid), "-D", p.sub("src"), "--lazy-pages",
		"--address", "127.0.0.1", "--port", strconv.Itoa(port), "--status-fd", "3", "-o", "dump.log", "-v4")
	dump.ExtraFiles = []*os.File{readyW}
	if err := dump.Start(); err != nil {
		ready.Close()
		readyW.Close()
		return "starting criu dump: " + err.Error()
	}
	readyW.Close()
	p.daemons = append(p.daemons, dump)
	dumpDone := make(chan error, 1)
	go func() { dumpDone <- dump.Wait() }()
	if err := waitReady(ctx, ready, dumpDone); err != nil {
		return "criu dump --lazy-pages: " + err.Error() + p.logErrors("src/dump.log")
	}
	if err := copyImages(p.sub("src"), p.sub("dst")); err != nil {
		return err.Error()
	}
	lp := exec.CommandContext(ctx, p.bin, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(port),
		"-D", p.sub("dst"), "-W", p.sub("work"), "-o", "lazy-pages.log", "-v4")
	if err := lp.Start(); err != nil {
		return "starting criu lazy-pages: " + err.Error()
	}
	p.daemons = append(p.daemons, lp)
	go func() { _ = lp.Wait() }()
	if err := waitFile(ctx, p.sub("work/"+lazySocket)); err != nil {
		return "criu lazy-pages did not listen: " + err.Error() + p.logErrors("work/lazy-pages.log")
	}
	pidfile := p.sub("restored.pid")
	rs := exec.CommandContext(ctx, p.bin, "restore", "-D", p.sub("dst"), "-W", p.sub("work"), "--lazy-pages", "-d",
		"--pidfile", pidfile, "-o", "restore.log", "-v4")
	out, rerr := rs.CombinedOutput()
	if b, err := os.ReadFile(pidfile); err == nil {
		p.restored, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	var derr error
	select {
	case derr = <-dumpDone:
	case <-ctx.Done():
		return "criu dump --lazy-pages did not finish serving pages in time" + p.logErrors("src/dump.log")
	}
	switch {
	case derr != nil:
		return "the source side failed: criu dump --lazy-pages: " + derr.Error() + p.logErrors("src/dump.log")
	case rerr != nil:
		return "criu restore --lazy-pages: " + rerr.Error() + " " + lastLines(string(out), 2) + p.logErrors("work/restore.log")
	}
	return ""
}

// logErrors returns CRIU's first error lines from a log under the probe's directory.
func (p *postCopyRun) logErrors(rel string) string {
	f, err := os.Open(p.sub(rel))
	if err != nil {
		return ""
	}
	defer f.Close()
	var errs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(errs) < 2 {
		line := sc.Text()
		if i := strings.Index(line, "Error ("); i >= 0 && !strings.Contains(line, "RLIMIT_NOFILE") {
			errs = append(errs, strings.TrimSpace(line[i:]))
		}
	}
	if len(errs) == 0 {
		return ""
	}
	return " (" + strings.Join(errs, "; ") + ")"
}

// cleanup kills what the probe started and waits until it is gone: the restored copy and the victim's sleep
// directly (a failed dump leaves the victim running, and its parent-death signal would end it only after
// unshare), the daemons, and the victim's unshare.
func (p *postCopyRun) cleanup() {
	var killed []int
	if p.restored > 0 && syscall.Kill(p.restored, syscall.SIGKILL) == nil {
		killed = append(killed, p.restored)
	}
	if p.sleeper >= 0 {
		_ = unix.PidfdSendSignal(p.sleeper, unix.SIGKILL, nil, 0)
		defer unix.Close(p.sleeper)
		defer waitPidfd(p.sleeper)
	}
	for _, d := range p.daemons {
		if d.Process != nil {
			_ = d.Process.Kill()
		}
	}
	if p.victim != nil && p.victim.Process != nil {
		_ = syscall.Kill(-p.victim.Process.Pid, syscall.SIGKILL)
		_ = p.victim.Wait()
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// waitPidfd waits (up to 5 s) until the process of pid file descriptor fd has ended.
func waitPidfd(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	_, _ = unix.Poll(fds, 5000)
}

// running reports whether process pid exists and has not ended (a zombie has).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// waitChild returns the PID of parent's first child (unshare's forked child), waiting a little for it.
func waitChild(ctx context.Context, parent int) (int, error) {
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
		if err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				// the child is setsid, which execs sleep in place
				return strconv.Atoi(f[0])
			}
		}
		select {
		case <-ctx.Done():
			return 0, errors.New("the throw-away process did not start")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits for CRIU's status byte (written when its lazy page server listens) or for the dump to end.
func waitReady(ctx context.Context, r *os.File, done <-chan error) error {
	got := make(chan error, 1)
	go func() {
		defer r.Close()
		b := make([]byte, 1)
		_, err := r.Read(b)
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			return errors.New("it exited before serving pages")
		}
		return nil
	case err := <-done:
		return fmt.Errorf("it exited before serving pages (%v)", err)
	case <-ctx.Done():
		return errors.New("it did not start serving pages in time")
	}
}

func waitFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// copyImages copies the images of a lazy dump: all but the lazy memory, which stays with the source (the
// pages files hold only what CRIU could not serve lazily).
func copyImages(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".img") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
