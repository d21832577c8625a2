package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryhq/ferry/node/criu"
)

// ShimMode says how the shim starts the container.
type ShimMode string

// Shim modes.
const (
	ShimRun     ShimMode = "run"     // runc run: a fresh start from the bundle
	ShimRestore ShimMode = "restore" // runc restore: from CRIU images
)

// ShimEnv is the environment variable that carries the shim's JSON configuration to `ferry shim`.
const ShimEnv = "FERRY_SHIM_CONFIG"

// ShimConfig configures one shim. The agent writes it; the shim process reads it from ShimEnv.
type ShimConfig struct {
	Mode      ShimMode `json:"mode"`
	ID        string   `json:"id"`
	Bundle    string   `json:"bundle"`
	Runc      Runc     `json:"runc"`
	LogPath   string   `json:"log_path"`   // the container's log (CRI format), appended to
	ExitPath  string   `json:"exit_path"`  // written when the container has exited
	PidPath   string   `json:"pid_path"`   // runc's --pid-file
	ImagePath string   `json:"image_path"` // restore: CRIU images
	WorkPath  string   `json:"work_path"`  // restore: CRIU log and stats-restore
	LazyPages bool     `json:"lazy_pages"` // restore: memory from a running `criu lazy-pages` in WorkPath
	// LazyDaemon, with LazyPages, is the lazy-pages daemon's socket moved aside (criu.LazyPages.DetachSocket):
	// the shim relays the restore to it and holds back the background copy of the memory for LazyHold after
	// the restore (criu.LazyRelay), or until the container exits. Empty: the restore finds the daemon itself.
	LazyDaemon string        `json:"lazy_daemon,omitempty"`
	LazyHold   time.Duration `json:"lazy_hold,omitempty"`
	// Binary is the ferry executable started as `Binary shim` (agent side only; empty: this executable).
	Binary string `json:"-"`
	// ShimLog receives the shim's own diagnostics (agent side only).
	ShimLog string `json:"-"`
	// Parked, if set, is a shim started ahead (ParkShim) that StartShim hands this configuration to.
	Parked *ParkedShim `json:"-"`
}

// ShimStarted is what a shim reports once the container runs.
type ShimStarted struct {
	ShimPid int `json:"shim_pid"`
	Pid     int `json:"pid"` // the container's init process, as seen from the host
}

// ExitStatus is written by the shim to ExitPath once the container's init process has exited.
type ExitStatus struct {
	Pid      int       `json:"pid"`
	ExitCode int       `json:"exit_code"` // -1 if unknown
	Signal   string    `json:"signal,omitempty"`
	At       time.Time `json:"at"`
}

type readyMsg struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// StartShim starts a detached shim (in its own session, so it outlives the agent) and waits until the shim
// says the container runs, or why it does not.
func StartShim(ctx context.Context, cfg ShimConfig) (*ShimStarted, error) {
	if cfg.Parked != nil {
		return cfg.Parked.start(ctx, cfg)
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("%w: finding the ferry executable: %v", ErrShim, err)
		}
	}
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	_ = os.Remove(cfg.ExitPath)
	_ = os.Remove(cfg.PidPath)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	cmd := exec.Command(bin, "shim")
	cmd.Env = append(os.Environ(), ShimEnv+"="+string(conf))
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cfg.ShimLog != "" {
		if lf, err := os.OpenFile(cfg.ShimLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			cmd.Stdout, cmd.Stderr = lf, lf
			defer lf.Close()
		}
	}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, fmt.Errorf("%w: starting %s shim: %v", ErrShim, bin, err)
	}
	readyW.Close()
	go func() { _ = cmd.Wait() }() // reap it when it ends; it is not ours to wait for otherwise
	return awaitStarted(ctx, readyR, cmd.Process)
}

// awaitStarted waits for the report of shim on its pipe ready: the container's pid, or why it did not start.
// A shim that does not report (ctx ended, pipe broken) is killed.
func awaitStarted(ctx context.Context, ready *os.File, shim *os.Process) (*ShimStarted, error) {
	msg, err := readReady(ctx, ready)
	if err != nil {
		_ = shim.Kill()
		return nil, err
	}
	if msg.Error != "" {
		return nil, fmt.Errorf("%w: %s", ErrShim, msg.Error)
	}
	return &ShimStarted{ShimPid: shim.Pid, Pid: msg.Pid}, nil
}

func readReady(ctx context.Context, r *os.File) (readyMsg, error) {
	type result struct {
		msg readyMsg
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var m readyMsg
		b, err := io.ReadAll(io.LimitReader(r, 64<<10))
		if err == nil {
			if len(bytes.TrimSpace(b)) == 0 {
				err = fmt.Errorf("%w: the shim exited without saying whether the container started (see shim.log)", ErrShim)
			} else {
				err = json.Unmarshal(b, &m)
			}
		}
		ch <- result{m, err}
	}()
	select {
	case <-ctx.Done():
		_ = r.SetReadDeadline(time.Now())
		return readyMsg{}, ctx.Err()
	case res := <-ch:
		return res.msg, res.err
	}
}

// RunShim is the body of the `ferry shim` process. It becomes a child subreaper, starts the container with runc
// (run or restore, detached) with stdout and stderr on pipes it owns, reports on fd 3, copies the pipes into
// the log until the container's init exits, then writes the exit status and returns.
func RunShim(cfg ShimConfig) error {
	ready := os.NewFile(3, "ready")
	unix.CloseOnExec(3) // runc must not inherit the report pipe
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return shimFail(ready, fmt.Errorf("becoming a subreaper: %w", err))
	}
	lw, err := OpenLogWriter(cfg.LogPath)
	if err != nil {
		return shimFail(ready, err)
	}
	defer lw.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return shimFail(ready, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return shimFail(ready, err)
	}
	var relay *criu.LazyRelay
	if cfg.Mode == ShimRestore && cfg.LazyPages && cfg.LazyDaemon != "" {
		if relay, err = criu.ListenLazyRelay(cfg.WorkPath, cfg.LazyDaemon, cfg.LazyHold); err != nil {
			return shimFail(ready, err)
		}
		// After the container's end (or a failed restore) the daemon has nothing to wait for.
		defer func() {
			if err := relay.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "ferry shim: relaying the restore to its lazy-pages daemon: %v\n", err)
			}
		}()
	}
	runErr := startWithRunc(cfg, outW, errW)
	outW.Close()
	errW.Close()
	if runErr != nil {
		return shimFail(ready, fmt.Errorf("%v%s", runErr, drainNow(outR, errR)))
	}
	pid, err := readPidFile(cfg.PidPath)
	if err != nil {
		return shimFail(ready, err)
	}
	var wg sync.WaitGroup
	for _, p := range []struct {
		r      *os.File
		stream string
	}{{outR, Stdout}, {errR, Stderr}} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = lw.CopyLines(p.r, p.stream) }()
	}
	_ = json.NewEncoder(ready).Encode(readyMsg{Pid: pid})
	ready.Close()
	st := waitInit(pid)
	waitTimeout(&wg, 5*time.Second)
	b, _ := json.Marshal(st)
	return WriteFileAtomic(cfg.ExitPath, b, 0o600)
}

func startWithRunc(cfg ShimConfig, stdout, stderr *os.File) error {
	var args []string
	switch cfg.Mode {
	case ShimRun:
		args = []string{"run", "--detach", "--pid-file", cfg.PidPath, "--bundle", cfg.Bundle, cfg.ID}
	case ShimRestore:
		args = []string{"restore", "--detach", "--pid-file", cfg.PidPath, "--bundle", cfg.Bundle,
			"--image-path", cfg.ImagePath, "--work-path", cfg.WorkPath}
		if cfg.LazyPages {
			args = append(args, "--lazy-pages")
		}
		args = append(args, cfg.ID)
	default:
		return fmt.Errorf("unknown shim mode %q", cfg.Mode)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(cfg.Runc.bin(), cfg.Runc.Args(args...)...)
	cmd.Dir = cfg.Bundle
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, stdout, stderr
	run := cmd.Run
	if cfg.Mode == ShimRestore {
		run = func() error { return cfg.Runc.RunCRIU(cmd) }
	}
	if err := run(); err != nil {
		what := "runc " + string(cfg.Mode)
		if cfg.Mode == ShimRestore {
			return fmt.Errorf("%s failed (%v); CRIU's log: %s", what, err, filepath.Join(cfg.WorkPath, "restore.log"))
		}
		return fmt.Errorf("%s failed (%v)", what, err)
	}
	return nil
}

// drainNow returns what is already waiting in the pipes (runc's error message, when it failed).
func drainNow(rs ...*os.File) string {
	var sb strings.Builder
	for _, r := range rs {
		_ = r.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		b, _ := io.ReadAll(io.LimitReader(r, 8<<10))
		if s := strings.TrimSpace(string(b)); s != "" {
			sb.WriteString(": " + lastRuncMessage(s))
		}
		r.Close()
	}
	return sb.String()
}

func shimFail(ready *os.File, err error) error {
	_ = json.NewEncoder(ready).Encode(readyMsg{Error: err.Error()})
	ready.Close()
	return err
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading runc's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("runc's pid file %s holds %q", path, b)
	}
	return pid, nil
}

// waitInit reaps children (the shim is their subreaper) until pid exits, and returns its status. If pid is
// not a child (it should be), it waits for it through a pidfd and reports an unknown exit code.
func waitInit(pid int) ExitStatus {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			waitPidfd(pid)
			return ExitStatus{Pid: pid, ExitCode: -1, At: time.Now()}
		}
		if wpid != pid {
			continue
		}
		st := ExitStatus{Pid: pid, ExitCode: ws.ExitStatus(), At: time.Now()}
		if ws.Signaled() {
			st.ExitCode = 128 + int(ws.Signal())
			st.Signal = unix.SignalName(ws.Signal())
		}
		return st
	}
}

// waitPidfd blocks until pid has exited (it need not be a child).
func waitPidfd(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// ReadExitStatus reads the exit status a shim wrote, if any.
func ReadExitStatus(path string) (*ExitStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st ExitStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return &st, nil
}

// WaitPid blocks until the process pid has exited or ctx ends. It works for processes that are not children.
func WaitPid(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Alive reports whether a process with this pid exists.
func Alive(pid int) bool {
	return pid > 0 && unix.Kill(pid, 0) == nil
}
