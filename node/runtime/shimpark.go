package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ferryhq/ferry/node/criu"
)

// A shim's own start (the ferry executable, the Go runtime, its set-up) takes 20-30 ms here before it runs
// runc. For a container whose start is on a downtime's path (an incoming migration's restore), the agent
// parks a shim ahead: started with ShimParkedEnv set, it does its start-up and then waits for its
// configuration on fd 4. Starting the container then only hands it the configuration. A parked shim whose
// configuration pipe closes without one (the migration was dropped, or the agent is gone) exits.

// ShimParkedEnv marks a shim started ahead of its container (see ParkShim).
const ShimParkedEnv = "FERRY_SHIM_PARKED"

// parkedConf is what a parked shim receives on fd 4.
type parkedConf struct {
	Config  ShimConfig `json:"config"`
	ShimLog string     `json:"shim_log,omitempty"`
}

// ParkedShim is a shim started ahead of its container.
type ParkedShim struct {
	cmd   *exec.Cmd
	conf  *os.File // the configuration pipe's write end
	ready *os.File // the report pipe's read end
	once  sync.Once
}

// ParkShim starts a shim that waits for its container (binary: the ferry executable; empty: this one).
func ParkShim(binary string) (*ParkedShim, error) {
	if binary == "" {
		var err error
		if binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("%w: finding the ferry executable: %v", ErrShim, err)
		}
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	confR, confW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, err
	}
	cmd := exec.Command(binary, "shim")
	cmd.Env = append(os.Environ(), ShimParkedEnv+"=1")
	cmd.ExtraFiles = []*os.File{readyW, confR} // fd 3 and fd 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	confR.Close()
	if err != nil {
		readyR.Close()
		confW.Close()
		return nil, fmt.Errorf("%w: starting %s shim: %v", ErrShim, binary, err)
	}
	go func() { _ = cmd.Wait() }() // reap it when it ends
	return &ParkedShim{cmd: cmd, conf: confW, ready: readyR}, nil
}

// Pid is the parked shim's process id.
func (p *ParkedShim) Pid() int { return p.cmd.Process.Pid }

// Boost gives every thread of the parked shim the normal CPU priority (nice 0). A shim parked from a thread at
// a low priority starts at that priority, and runc and the container inherit the nice value of the thread
// that starts them; the shim also does this itself when it gets its configuration.
func (p *ParkedShim) Boost() {
	normalPriority(p.cmd.Process.Pid)
}

// LowerSession sets the nice value of the parked shim's session. The kernel's automatic grouping (autogroups,
// on by default) shares the CPU between sessions first and orders threads by their nice values only within
// one; a shim runs in a session of its own, so a low nice value of its threads alone would not hold it back
// from anything outside it. Boost (and the shim, when it gets its container) sets it back to 0.
func (p *ParkedShim) LowerSession(nice int) {
	criu.SetSessionNice(p.cmd.Process.Pid, nice)
}

// normalPriority sets every thread of process pid, and its session's autogroup, to nice 0 (nice is per
// thread).
func normalPriority(pid int) {
	criu.SetSessionNice(pid, 0)
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 0)
		}
	}
}

// Discard lets a parked shim that was not used exit. Safe on nil and after use.
func (p *ParkedShim) Discard() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.conf.Close()
		p.ready.Close()
	})
}

// start hands cfg to the shim and waits until it says the container runs (as StartShim does).
func (p *ParkedShim) start(ctx context.Context, cfg ShimConfig) (*ShimStarted, error) {
	used := false
	p.once.Do(func() { used = true })
	if !used {
		return nil, fmt.Errorf("%w: the parked shim was already used or discarded", ErrShim)
	}
	defer p.ready.Close()
	b, err := json.Marshal(parkedConf{Config: cfg, ShimLog: cfg.ShimLog})
	if err != nil {
		p.conf.Close()
		return nil, err
	}
	_ = os.Remove(cfg.ExitPath)
	_ = os.Remove(cfg.PidPath)
	_, err = p.conf.Write(b)
	p.conf.Close()
	if err != nil {
		_ = p.cmd.Process.Kill()
		return nil, fmt.Errorf("%w: the parked shim is gone: %v", ErrShim, err)
	}
	return awaitStarted(ctx, p.ready, p.cmd.Process)
}

// ReadParkedConfig is the parked shim's wait: it reads its configuration from fd 4 and sends its own output
// to the shim log it names. ok is false when the pipe closed without one: the shim is not needed.
func ReadParkedConfig() (cfg ShimConfig, ok bool, err error) {
	f := os.NewFile(4, "shim-config")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return cfg, false, err
	}
	if len(b) == 0 {
		return cfg, false, nil
	}
	var pc parkedConf
	if err := json.Unmarshal(b, &pc); err != nil {
		return cfg, false, fmt.Errorf("the parked shim's configuration: %w", err)
	}
	_ = os.Unsetenv(ShimParkedEnv)
	normalPriority(os.Getpid()) // it may have been parked at a low priority; what it starts must not be
	if pc.ShimLog != "" {
		if lf, err := os.OpenFile(pc.ShimLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_ = unix.Dup2(int(lf.Fd()), 1)
			_ = unix.Dup2(int(lf.Fd()), 2)
			lf.Close()
		}
	}
	return pc.Config, true, nil
}
