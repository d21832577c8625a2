package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// LogFile is the name of a container's log inside a migration's dump directory.
const LogFile = "container.log"

// MigrationDumpOptions say how to dump a container that is moving to another node.
type MigrationDumpOptions struct {
	// PageServer, when set ("127.0.0.1:PORT"), is where CRIU sends the memory pages as it dumps them (the
	// agent forwards that port to the target's page server through SSH); the dump directory then holds only
	// the small images. Empty: the pages are written into the dump directory like the rest.
	PageServer string `json:"page_server,omitempty"`
}

// MigrationDump is the source side of a migration: the container is frozen (not running, not gone), and
// Dir holds what the target needs beside the pages: CRIU's other images, the writable layer's changes, the
// recorded configuration and the log.
type MigrationDump struct {
	Container string          `json:"container"`
	Dir       string          `json:"dir"`
	FrozenAt  time.Time       `json:"frozen_at"`
	DumpTook  time.Duration   `json:"dump_took"`
	CRIU      *criu.DumpStats `json:"criu,omitempty"`
}

// DumpForMigration freezes a running container, dumps it with CRIU (leaving it frozen), and gathers what the
// target needs. The container stays frozen until FinishMigration: removed on commit, thawed on roll-back. If
// the dump fails, the container is thawed and goes on, and nothing is left.
func (a *Agent) DumpForMigration(ctx context.Context, name string, opts MigrationDumpOptions) (*MigrationDump, error) {
	e, unlock, err := a.lockForCRIU(name, "only a running container can migrate", StateRunning)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := a.migrationDir(name)
	_ = os.RemoveAll(dir)
	for _, d := range []string{filepath.Join(dir, checkpoint.ImagesDir), filepath.Join(dir, checkpoint.LogsDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	_ = e.update(func(c *Container) { c.State = StateMigrating })
	md, err := a.dumpFrozen(ctx, e, dir, opts)
	if err != nil {
		a.thaw(context.WithoutCancel(ctx), e)
		_ = os.RemoveAll(dir)
		return nil, err
	}
	a.log.Info("container dumped for migration; frozen until the target runs it", "container", name, "took", md.DumpTook.Round(time.Millisecond))
	return md, nil
}

func (a *Agent) migrationDir(name string) string {
	return filepath.Join(a.cfg.DataDir, "migrations", name)
}

func (a *Agent) dumpFrozen(ctx context.Context, e *entry, dir string, opts MigrationDumpOptions) (*MigrationDump, error) {
	c := e.snapshot()
	name := c.Config.Name
	frozenAt := time.Now()
	if err := a.pause(ctx, name); err != nil {
		return nil, fmt.Errorf("freezing %s: %w", name, err)
	}
	// Frozen, the container's own tmpfs, the writable layer, the record and the log no longer change: they are
	// gathered while CRIU dumps.
	rest := make(chan error, 1)
	go func() {
		if err := captureTmpfs(ctx, c.Pid, dir); err != nil {
			rest <- err
			return
		}
		if err := writeDiff(ctx, e.upperDir(c.Generation), filepath.Join(dir, checkpoint.DiffFile)); err != nil {
			rest <- err
			return
		}
		if err := writeJSON(filepath.Join(dir, checkpoint.RecordFile), c.Config); err != nil {
			rest <- err
			return
		}
		if err := copyFile(e.logPath(), filepath.Join(dir, LogFile)); err != nil {
			rest <- fmt.Errorf("copying the log of %s: %w", name, err)
			return
		}
		rest <- nil
	}()
	ro := runtime.CheckpointOptions{ImagePath: filepath.Join(dir, checkpoint.ImagesDir), WorkPath: filepath.Join(dir, checkpoint.LogsDir),
		LeaveRunning: true, PageServer: opts.PageServer}
	cerr := a.runc.Checkpoint(ctx, name, ro)
	took := time.Since(frozenAt)
	rerr := <-rest
	if cerr != nil {
		return nil, fmt.Errorf("CRIU could not dump %s: %w%s", name, cerr, criuLogErrors(filepath.Join(ro.WorkPath, "dump.log")))
	}
	if rerr != nil {
		return nil, rerr
	}
	md := &MigrationDump{Container: name, Dir: dir, FrozenAt: frozenAt, DumpTook: took}
	md.CRIU, _ = criu.ReadDumpStats(ro.WorkPath)
	return md, nil
}

// thaw resumes a container frozen for a migration that did not happen. Holds e.op.
func (a *Agent) thaw(ctx context.Context, e *entry) {
	name := e.snapshot().Config.Name
	if err := a.resume(ctx, name); err != nil {
		a.log.Error("could not thaw the container after a failed migration", "container", name, "err", err)
	}
	_ = e.update(func(c *Container) { c.State = StateRunning })
	if st, err := a.runc.State(ctx, name); err != nil || st.Status != "running" {
		a.finishExited(ctx, e)
	}
}

// FinishMigration ends the source side of a migration. With commit (the target runs the container) the
// frozen copy is killed and everything of it removed from this node; without, it is thawed and goes on.
func (a *Agent) FinishMigration(ctx context.Context, name string, commit bool) error {
	e, unlock, err := a.lockIn(name, "only a migrating container's migration can be finished", StateMigrating)
	if err != nil {
		return err
	}
	defer unlock()
	defer os.RemoveAll(a.migrationDir(name))
	if !commit {
		a.thaw(ctx, e)
		a.log.Info("migration rolled back; the container goes on here", "container", name)
		return nil
	}
	c := e.snapshot()
	// Killed while frozen: the pending SIGKILL ends every process as soon as the cgroup thaws, before any
	// of them runs again, so the container never runs here after the target took it over.
	_ = a.runc.Kill(ctx, name, syscall.SIGKILL, true)
	_ = a.resume(ctx, name)
	waitFor(ctx, c.ShimPid, 10*time.Second)
	a.release(ctx, e)
	a.forget(e)
	_ = os.RemoveAll(a.checkpointsDir(name))
	a.log.Info("migration committed; the container left this node", "container", name)
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if os.IsNotExist(err) {
		return os.WriteFile(dst, nil, 0o600)
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
