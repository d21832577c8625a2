package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// Incoming is the target side of a migration being prepared: a pending checkpoint directory whose images
// directory receives the pages from CRIU's page server (if one was asked for) and, later, the rest of the dump.
type Incoming struct {
	ID         string `json:"id"`
	Container  string `json:"container"`
	Dir        string `json:"dir"`
	PagePort   int    `json:"page_port,omitempty"` // the page server's port on this node's loopback
	pend       *checkpoint.Pending
	pageServer *criu.PageServer
	lazy       *earlyLazy          // the restore's lazy-pages daemon, started ahead (nil: restores are not lazy)
	shim       *runtime.ParkedShim // the restored container's shim, started ahead (nil: none could be)
	expiry     *time.Timer
}

// IncomingTimeout is how long a prepared incoming migration waits for its restore. A source that died or was
// cut off before it could abort leaves it behind: past this, the page server is stopped and what arrived is
// removed. (A migration's pages arrive while the source dumps; ten minutes covers tens of GiB.)
const IncomingTimeout = 10 * time.Minute

type incomingSet struct {
	mu sync.Mutex
	m  map[string]*Incoming
	// restoring: the migrations whose restore runs (RestoreIncoming), true once aborted meanwhile.
	restoring map[string]bool
}

// PrepareIncoming readies this node to receive container name: it must not have a container of that name,
// and, with pageServer, a CRIU page server is started on loopback to receive the pages.
func (a *Agent) PrepareIncoming(ctx context.Context, id, name string, pageServer bool) (*Incoming, error) {
	if err := a.criuReady(); err != nil {
		return nil, err
	}
	if !ValidName(name) || !checkpoint.ValidID(id) {
		return nil, fmt.Errorf("%w: migration %q of %q", ErrInvalid, id, name)
	}
	if _, err := a.lookup(name); err == nil {
		return nil, fmt.Errorf("%w: node %s already has a container named %s", ErrExists, a.cfg.Name, name)
	}
	pend, err := checkpoint.Begin(a.checkpointsDir(name), id)
	if err != nil {
		return nil, err
	}
	in := &Incoming{ID: id, Container: name, Dir: pend.Dir, pend: pend}
	if pageServer {
		ps, err := criu.StartPageServer(ctx, criu.PageServerConfig{Binary: a.cfg.Criu, ImagesDir: pend.ImagesDir()})
		if err != nil {
			pend.Abort()
			return nil, err
		}
		in.pageServer, in.PagePort = ps, ps.Port
		// Remembered so that an agent restarted before the migration ended can stop it.
		_ = os.WriteFile(filepath.Join(pend.Dir, pageServerPidFile), []byte(strconv.Itoa(ps.Pid)), 0o600)
	}
	if a.lazyOK() {
		in.lazy = a.startEarlyLazy(id)
	}
	// Its shim too: its start-up is then not on the downtime's path.
	if sh, err := runtime.ParkShim(a.cfg.ShimBinary); err == nil {
		in.shim = sh
	} else {
		a.log.Warn("could not start a migration's shim ahead; it starts at the restore", "migration", id, "err", err)
	}
	a.incoming.mu.Lock()
	if a.incoming.m == nil {
		a.incoming.m = map[string]*Incoming{}
	}
	a.incoming.m[id] = in
	in.expiry = time.AfterFunc(a.cfg.IncomingTimeout, func() {
		if a.dropIncoming(id) == in {
			a.log.Warn("an incoming migration was neither restored nor aborted in time; its source is gone: removed it",
				"container", name, "migration", id, "after", a.cfg.IncomingTimeout)
			in.abort()
		}
	})
	a.incoming.mu.Unlock()
	return in, nil
}

// abort stops the page server and the lazy-pages daemon and removes what arrived.
func (in *Incoming) abort() {
	in.shim.Discard()
	in.pageServer.Stop()
	in.lazy.stop()
	in.pend.Abort()
}

// abortAllIncoming drops every incoming migration (the agent is closing: nothing will restore them).
func (a *Agent) abortAllIncoming() {
	a.incoming.mu.Lock()
	ins := a.incoming.m
	a.incoming.m = nil
	a.incoming.mu.Unlock()
	for _, in := range ins {
		in.expiry.Stop()
		in.abort()
	}
}

// Incoming returns a prepared incoming migration.
func (a *Agent) Incoming(id string) (*Incoming, error) {
	a.incoming.mu.Lock()
	defer a.incoming.mu.Unlock()
	in, ok := a.incoming.m[id]
	if !ok {
		return nil, fmt.Errorf("%w: no incoming migration %s on node %s", ErrNotFound, id, a.cfg.Name)
	}
	return in, nil
}

func (a *Agent) dropIncoming(id string) *Incoming {
	a.incoming.mu.Lock()
	defer a.incoming.mu.Unlock()
	in := a.incoming.m[id]
	delete(a.incoming.m, id)
	if in != nil && in.expiry != nil {
		in.expiry.Stop()
	}
	return in
}

// AbortIncoming forgets an incoming migration and removes what it received.
//
// A migration whose restore runs is marked: the restore removes what it restored when it ends, so that a
// migration the leader rolled back meanwhile does not leave its container running here.
func (a *Agent) AbortIncoming(id string) {
	if in := a.dropIncoming(id); in != nil {
		in.abort()
		return
	}
	a.incoming.mu.Lock()
	defer a.incoming.mu.Unlock()
	if _, ok := a.incoming.restoring[id]; ok {
		a.incoming.restoring[id] = true
	}
}

// restoring marks migration id's restore as running until the returned function is called, which reports
// whether the migration was aborted meanwhile.
func (a *Agent) restoring(id string) func() (aborted bool) {
	a.incoming.mu.Lock()
	defer a.incoming.mu.Unlock()
	if a.incoming.restoring == nil {
		a.incoming.restoring = map[string]bool{}
	}
	a.incoming.restoring[id] = false
	return func() bool {
		a.incoming.mu.Lock()
		defer a.incoming.mu.Unlock()
		aborted := a.incoming.restoring[id]
		delete(a.incoming.restoring, id)
		return aborted
	}
}

// RestoreIncoming restores a migrated container from what arrived: the pages (from the page server) and the
// rest of the dump, received and checked by the transfer into received (a directory that is merged into the
// checkpoint). The checkpoint gets its own manifest here, and the container is registered and restored. On
// failure nothing of it is left on this node.
func (a *Agent) RestoreIncoming(ctx context.Context, id, received string, progress ProgressFunc) (*RestoreReport, error) {
	in := a.dropIncoming(id)
	if in == nil {
		return nil, fmt.Errorf("%w: no incoming migration %s on node %s", ErrNotFound, id, a.cfg.Name)
	}
	ended := a.restoring(id)
	ending := sync.OnceValue(ended)
	defer ending()
	fail := func(err error) (*RestoreReport, error) {
		in.abort()
		return nil, err
	}
	t0 := time.Now()
	if in.pageServer != nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := waitPageServer(wctx, in.pageServer)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("CRIU's page server on %s did not finish: %w", a.cfg.Name, err))
		}
	}
	if err := mergeInto(received, in.pend.Dir); err != nil {
		return fail(fmt.Errorf("assembling the checkpoint: %w", err))
	}
	a.markLazy(filepath.Join(in.pend.Dir, checkpoint.ImagesDir), in.Container)
	var rec ContainerConfig
	if err := readJSON(filepath.Join(in.pend.Dir, checkpoint.RecordFile), &rec); err != nil || rec.Name != in.Container {
		return fail(fmt.Errorf("%w: the migrated record is for %q, expected %q (%v)", ErrRejected, rec.Name, in.Container, err))
	}
	_ = os.Remove(filepath.Join(in.pend.Dir, pageServerPidFile))
	// The log goes to the container, not into the checkpoint.
	logPath := in.pend.Dir + ".log"
	if err := os.Rename(filepath.Join(in.pend.Dir, LogFile), logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	defer os.Remove(logPath)
	t1 := time.Now()
	// Every byte was checked on arrival (the page stream's SHA-256 against the source's, the rest by the
	// stream's manifest), so the checkpoint's own manifest is written once the container runs, not before.
	ck, seal, err := in.pend.Publish()
	if err != nil {
		return fail(err)
	}
	t2 := time.Now()
	if a.cfg.Fault("break-restore") {
		_ = os.Truncate(filepath.Join(ck.ImagesDir(), "inventory.img"), 3)
	}
	rep, err := a.restoreMigrated(ctx, ck, rec, logPath, in.lazy.starter(a, ck), in.shim, progress)
	if err != nil {
		in.shim.Discard()
		in.lazy.stop()
		_ = os.RemoveAll(ck.Dir)
		return nil, err
	}
	if ending() {
		a.log.Warn("a migration was aborted while its restore ran; removing what it restored", "migration", id, "container", in.Container)
		if err := a.Remove(context.WithoutCancel(ctx), in.Container, true); err != nil {
			a.log.Error("could not remove the container of an aborted migration", "container", in.Container, "err", err)
		}
		return nil, fmt.Errorf("%w: migration %s was aborted while %s restored it; what it restored was removed", ErrState, id, a.cfg.Name)
	}
	a.log.Info("migration restore timings", "container", in.Container, "wait_and_merge", t1.Sub(t0).Round(time.Millisecond),
		"publish", t2.Sub(t1).Round(time.Millisecond), "restore", time.Since(t2).Round(time.Millisecond))
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		start := time.Now()
		var err error
		inBackground(func() { _, err = seal(a.ctx) }) // off the CPU the next migration's dump wants
		if err != nil {
			a.log.Error("could not write the manifest of a migrated checkpoint", "container", in.Container, "checkpoint", ck.ID, "err", err)
			return
		}
		a.log.Info("migrated checkpoint sealed", "container", in.Container, "checkpoint", ck.ID, "took", time.Since(start).Round(time.Millisecond))
	}()
	return rep, nil
}

// pageServerPidFile, in a pending incoming checkpoint, holds the pid of its page server.
const pageServerPidFile = "page-server.pid"

// stopPageServerOf kills the page server a pending incoming checkpoint left, if it is still CRIU's.
func stopPageServerOf(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, pageServerPidFile))
	if err != nil {
		return
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "criu") {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitPageServer waits for CRIU's page server to exit, which it does when the dump that fed it is done.
func waitPageServer(ctx context.Context, ps *criu.PageServer) error {
	return runtime.WaitPid(ctx, ps.Pid)
}

// mergeInto moves every file under src into the same place under dst, creating directories; a file that
// exists in both is an error (the page server and the stream never deliver the same file).
func mergeInto(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if _, err := os.Lstat(target); err == nil {
			return fmt.Errorf("%s arrived twice", rel)
		}
		return os.Rename(p, target)
	})
}

// restoreMigrated registers the container with its log from the source and restores it from ck.
func (a *Agent) restoreMigrated(ctx context.Context, ck *checkpoint.Checkpoint, rec ContainerConfig, logPath string, lazy lazyStart, shim *runtime.ParkedShim, progress ProgressFunc) (*RestoreReport, error) {
	e, err := a.register(rec)
	if err != nil {
		return nil, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if err := os.Rename(logPath, e.logPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.forget(e)
		return nil, err
	}
	_ = e.update(func(c *Container) { c.State = StateCheckpointed; c.Checkpoint = ck.ID })
	ph := newPhaser(progress)
	// No hold: in a drain the next container's dump comes about a second later, and the copy of this one's
	// memory (tens of milliseconds of CPU for most) should be over by then, not start in its downtime.
	pid, err := a.restoreFrom(ctx, e, ck, rec, lazy, shim, 0, ph)
	if err != nil {
		a.forget(e)
		return nil, err
	}
	rep := &RestoreReport{Container: rec.Name, Node: a.cfg.Name, Checkpoint: ck.ID, Pid: pid, Took: time.Since(ph.start)}
	rep.CRIU, _ = criu.ReadRestoreStats(a.restoreWork(e))
	a.log.Info("migrated container restored", "container", rec.Name, "took", rep.Took.Round(time.Millisecond))
	return rep, nil
}

// freshLazy returns a lazyStart that starts a lazy-pages daemon for ck's images, or nil when restores are not lazy.
func (a *Agent) freshLazy(ck *checkpoint.Checkpoint) lazyStart {
	if !a.lazyOK() {
		return nil
	}
	return func(ctx context.Context, work string) (*criu.LazyPages, *runtime.ParkedShim, error) {
		lp, err := criu.StartLazyPages(ctx, a.criuExec, ck.ImagesDir(), work)
		return lp, nil, err
	}
}

// lazyOK says whether restores of migrated containers start before their memory is in (CRIU's lazy pages from
// the local images, through userfaultfd): when the probe found userfaultfd, unless turned off.
func (a *Agent) lazyOK() bool {
	return a.features != nil && a.features.Has(criu.FeatureLazyPages) && a.features.Has(criu.FeatureLazyPagesNonCoop) && !a.cfg.Fault("no-lazy-restore")
}
