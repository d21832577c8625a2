package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"

	"github.com/ferryhq/ferry/node/criu"
)

// Runc runs the runc command line with a per-node state root. Its methods are safe for concurrent use; runc
// itself serialises operations on one container.
type Runc struct {
	// Binary is the runc executable; empty means "runc" from PATH.
	Binary string
	// Root is runc's state directory (--root). Each node has its own, so nodes can share a kernel.
	Root string
	// Criu is the criu executable runc should use; empty lets runc find "criu" on PATH.
	Criu string
	// RunDir, if set, is the tmpfs that runc commands that run CRIU (checkpoint, restore) get as /run, where
	// CRIU keeps its kernel probe (see criu.KdatEnv and criu.StartWithRun).
	RunDir string `json:"run_dir,omitempty"`
	// Log, if set, receives runc's own log (JSON lines) instead of its stderr: for runs whose stderr is a
	// container's (the shim's), so that runc's warnings do not land in the container's log.
	Log string `json:"log,omitempty"`
}

func (r *Runc) bin() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

// Args returns runc's global arguments followed by args.
func (r *Runc) Args(args ...string) []string {
	g := []string{"--root", r.Root}
	if r.Log != "" {
		g = append(g, "--log", r.Log, "--log-format", "json")
	}
	if r.Criu != "" {
		g = append(g, "--criu", r.Criu)
	}
	return append(g, args...)
}

// RunCRIU runs cmd, a runc command that runs CRIU (made by Command): with RunDir as its /run when there is one.
func (r *Runc) RunCRIU(cmd *exec.Cmd) error {
	if r.RunDir == "" {
		return cmd.Run()
	}
	if err := criu.StartWithRun(cmd, r.RunDir); err != nil {
		return err
	}
	return cmd.Wait()
}

// Command returns an exec.Cmd for runc with the global arguments set.
func (r *Runc) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.bin(), r.Args(args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	return cmd
}

func (r *Runc) run(ctx context.Context, args ...string) ([]byte, error) {
	return r.runCmd(r.Command(ctx, args...), args)
}

func (r *Runc) runCmd(cmd *exec.Cmd, args []string) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), runcError(args, errb.String(), err)
	}
	return out.Bytes(), nil
}

func runcError(args []string, stderr string, err error) error {
	msg := lastRuncMessage(stderr)
	if strings.Contains(msg, "does not exist") || strings.Contains(msg, "container not found") {
		return fmt.Errorf("%w: runc %s: %s", ErrNotFound, args[0], msg)
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%w: runc %s: %s", ErrRunc, args[0], msg)
}

// lastRuncMessage picks the most useful line of runc's stderr (its JSON log lines or plain text).
func lastRuncMessage(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		var j struct{ Msg string }
		if json.Unmarshal([]byte(l), &j) == nil && j.Msg != "" {
			return j.Msg
		}
		return l
	}
	return ""
}

// State is the part of `runc state` ferry uses.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"` // created, running, paused, stopped
	Bundle string `json:"bundle"`
}

// State returns runc's view of the container, or an error wrapping ErrNotFound.
func (r *Runc) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("%w: decoding runc state of %s: %v", ErrRunc, id, err)
	}
	return &s, nil
}

// List returns the containers in this runc root.
func (r *Runc) List(ctx context.Context) ([]State, error) {
	out, err := r.run(ctx, "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var list []State
	if len(bytes.TrimSpace(out)) == 0 || bytes.Equal(bytes.TrimSpace(out), []byte("null")) {
		return nil, nil
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("%w: decoding runc list: %v", ErrRunc, err)
	}
	return list, nil
}

// Kill sends sig to the container's init process (all processes with all=true).
func (r *Runc) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, append(args, id, fmt.Sprint(int(sig)))...)
	return err
}

// Delete removes runc's record of the container (force kills it first if it runs).
func (r *Runc) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, append(args, id)...)
	return err
}

// Pause freezes every process of the container.
func (r *Runc) Pause(ctx context.Context, id string) error {
	_, err := r.run(ctx, "pause", id)
	return err
}

// Resume thaws a paused container.
func (r *Runc) Resume(ctx context.Context, id string) error {
	_, err := r.run(ctx, "resume", id)
	return err
}

// Exec runs args inside the container, with the given environment added, and returns its exit code.
func (r *Runc) Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error) {
	a := []string{"exec"}
	for _, kv := range env {
		a = append(a, "--env", kv)
	}
	a = append(append(a, id), args...)
	var errb bytes.Buffer
	cmd := r.Command(ctx, a...)
	cmd.Stdout = stdout
	cmd.Stderr = io.MultiWriter(stderr, &errb)
	err := cmd.Run()
	if err == nil {
		return 0, nil
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() >= 0 && !strings.Contains(errb.String(), "level=error") &&
		!strings.Contains(errb.String(), `"level":"error"`) {
		return ee.ExitCode(), nil
	}
	return -1, runcError(a, errb.String(), err)
}

// CheckpointOptions are the runc checkpoint flags ferry uses.
type CheckpointOptions struct {
	ImagePath      string // where CRIU writes the images
	WorkPath       string // CRIU's log and stats-dump
	LeaveRunning   bool   // keep the container running (or paused, if it was) after the dump
	TCPEstablished bool   // allow established TCP connections (they are restored in repair mode)
	PageServer     string // "ADDR:PORT": send the memory pages to CRIU's page server there instead of to ImagePath
}

// Checkpoint dumps the container with CRIU through runc. Without LeaveRunning the container is gone afterwards.
func (r *Runc) Checkpoint(ctx context.Context, id string, o CheckpointOptions) error {
	args := []string{"checkpoint", "--image-path", o.ImagePath, "--work-path", o.WorkPath}
	if o.LeaveRunning {
		args = append(args, "--leave-running")
	}
	if o.TCPEstablished {
		args = append(args, "--tcp-established")
	}
	if o.PageServer != "" {
		args = append(args, "--page-server", o.PageServer)
	}
	args = append(args, id)
	cmd := r.Command(ctx, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := r.RunCRIU(cmd); err != nil {
		return fmt.Errorf("%w (CRIU's log: %s/dump.log)", runcError(args, errb.String(), err), o.WorkPath)
	}
	return nil
}
