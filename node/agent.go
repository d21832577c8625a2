package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/images"
	"github.com/ferryhq/ferry/node/runtime"
)

// Agent is one node's agent. Its methods are safe for concurrent use; operations on one container are
// serialised, operations on different containers run in parallel.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	images   *images.Store
	runc     *runtime.Runc
	criuExec criu.Exec // how the agent starts CRIU daemons of its own (lazy-pages)
	maskDir  string    // the empty read-only directory bound over masked directories on restore
	features *criu.Features
	probeErr error
	started  time.Time
	postCopy postCopyCache

	mu         sync.Mutex
	containers map[string]*entry
	incoming   incomingSet
	verified   verifiedSet // snapshots checked against their manifests
	arrived    arrivals    // wakes AwaitSnapshot at each accepted copy
	spares     *lazySpares // lazy-pages daemons started ahead of clones

	ctx    context.Context // ends at Close: stops the watchers
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New creates the agent's directories, probes CRIU, opens the image store and re-attaches to the containers
// found on disk (see Reattach). A missing or broken CRIU is logged and reported, not fatal: containers still
// run, and checkpoint and restore say what is missing.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := closeInheritedOnExec(); err != nil {
		return nil, fmt.Errorf("marking inherited descriptors close-on-exec: %w", err)
	}
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "containers"),
		filepath.Join(cfg.DataDir, "checkpoints"), filepath.Join(cfg.DataDir, "runc")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	maskDir, err := criu.MaskDir(cfg.DataDir)
	if err != nil {
		cfg.Logger.Warn("masked directories of restored containers will be bound from a plain empty directory", "node", cfg.Name, "err", err)
	}
	for net, file := range criuConfFiles {
		if err := runtime.WriteFileAtomic(filepath.Join(cfg.DataDir, file), []byte(runtime.CriuConfig(net, maskDir, "")), 0o600); err != nil {
			return nil, err
		}
	}
	st, err := images.Open(filepath.Join(cfg.DataDir, "images"), cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("opening the image store: %w", err)
	}
	rc := &runtime.Runc{Binary: cfg.Runc, Root: filepath.Join(cfg.DataDir, "runc"), Criu: cfg.Criu}
	crx := criu.Exec{Path: cfg.Criu}
	if env, err := criu.KdatLauncher(ctx, cfg.DataDir, cfg.Criu); err != nil {
		cfg.Logger.Warn("CRIU will probe the kernel on each run (about 0.25 s each): it keeps that probe only on a tmpfs /run",
			"node", cfg.Name, "err", err)
	} else if env.Launcher != "" {
		cfg.Logger.Info("CRIU runs with a tmpfs /run of this node's, where it keeps its kernel probe (the host's /run is not a tmpfs)",
			"node", cfg.Name, "launcher", env.Launcher)
		cfg.Criu = env.Criu
		rc.Criu, rc.RunDir = env.Real, env.RunDir
		crx = criu.Exec{Path: env.Real, RunDir: env.RunDir}
	}
	actx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("node", cfg.Name), images: st, started: time.Now(),
		runc:       rc,
		criuExec:   crx,
		maskDir:    maskDir,
		containers: map[string]*entry{}, ctx: actx, cancel: cancel,
	}
	a.spares = newLazySpares(actx, filepath.Join(cfg.DataDir, "lazy-spares"), crx,
		func() (*runtime.ParkedShim, error) { return runtime.ParkShim(cfg.ShimBinary) }, a.log, &a.wg)
	a.spares.quiet = a.lazyHold() // a burst's clones start within it
	a.probe(ctx)
	a.reattach(ctx)
	return a, nil
}

func (a *Agent) probe(ctx context.Context) {
	f, err := criu.Probe(ctx, criu.ProbeConfig{Binary: a.cfg.Criu})
	a.features, a.probeErr = f, err
	switch {
	case err != nil:
		a.log.Warn("CRIU is not usable: checkpoint, restore and migration are off on this node", "err", err)
	case !f.CheckOK:
		a.log.Warn("criu check failed: checkpoint, restore and migration are off on this node", "criu", f.Version, "output", f.CheckOutput)
	default:
		a.log.Info("CRIU probed", "version", f.Version, "path", f.Path, "features", f.Names(), "took", f.Took.Round(time.Millisecond))
	}
}

// Name is the node's name.
func (a *Agent) Name() string { return a.cfg.Name }

// DataDir is the agent's data directory.
func (a *Agent) DataDir() string { return a.cfg.DataDir }

// Images is the node's image store.
func (a *Agent) Images() *images.Store { return a.images }

// Close stops the agent's watchers. Containers keep running; a new agent on the same data dir re-attaches.
func (a *Agent) Close() error {
	a.cancel()
	a.wg.Wait()
	a.spares.close()
	a.abortAllIncoming()
	criu.ReleaseKdat(a.cfg.DataDir)
	criu.ReleaseMaskDir(a.cfg.DataDir)
	return nil
}

// lookup returns the container's entry or an ErrNotFound that names it.
func (a *Agent) lookup(name string) (*entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.containers[name]
	if !ok {
		return nil, fmt.Errorf("%w: no container named %q on node %s (ferry ps lists them)", ErrNotFound, name, a.cfg.Name)
	}
	return e, nil
}

// List returns every container's record, sorted by name.
func (a *Agent) List() []Container {
	a.mu.Lock()
	es := make([]*entry, 0, len(a.containers))
	for _, e := range a.containers {
		es = append(es, e)
	}
	a.mu.Unlock()
	out := make([]Container, 0, len(es))
	for _, e := range es {
		out = append(out, e.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Config.Name < out[j].Config.Name })
	return out
}

// Get returns one container's record.
func (a *Agent) Get(name string) (Container, error) {
	e, err := a.lookup(name)
	if err != nil {
		return Container{}, err
	}
	return e.snapshot(), nil
}

func (a *Agent) checkpointsDir(name string) string {
	return filepath.Join(a.cfg.DataDir, "checkpoints", name)
}

// criuConfFiles, in the data directory, are the CRIU configurations by network (see runtime.CriuConfig) that
// containers started by earlier versions of the agent name in their specs; the agent rewrites them at each
// start. A container started now has a file of its own (writeCriuConfig).
var criuConfFiles = map[string]string{runtime.NetNone: "criu-private-net.conf", runtime.NetHost: "criu-host-net.conf"}

// writeCriuConfig writes the CRIU configuration of e's container, which its spec names: its own tmpfs are
// external mounts, restored from e.tmpfsDir (see runtime.Tmpfs).
func (a *Agent) writeCriuConfig(e *entry, net string) error {
	if net == "" {
		net = runtime.NetNone
	}
	return runtime.WriteFileAtomic(e.criuConf(), []byte(runtime.CriuConfig(net, a.maskDir, e.tmpfsDir())), 0o600)
}

func (a *Agent) cgroupsPath(name string) string {
	return fmt.Sprintf("/ferry/%s/%s", a.cfg.Name, name)
}

// lockForCRIU is the start of every CRIU operation on a container: CRIU must be usable, the container must
// exist and be in one of states (else the error says so, with why), and its operations are serialised: the
// caller must call unlock when done.
func (a *Agent) lockForCRIU(name, why string, states ...string) (e *entry, unlock func(), err error) {
	if err := a.criuReady(); err != nil {
		return nil, nil, err
	}
	return a.lockIn(name, why, states...)
}

// lockIn serialises an operation on a container that must exist and be in one of states (else the error says
// so, with why); the caller must call unlock when done.
func (a *Agent) lockIn(name, why string, states ...string) (e *entry, unlock func(), err error) {
	if e, err = a.lookup(name); err != nil {
		return nil, nil, err
	}
	e.op.Lock()
	if c := e.snapshot(); !slices.Contains(states, c.State) {
		e.op.Unlock()
		return nil, nil, fmt.Errorf("%w: container %s is %s; %s", ErrState, name, c.State, why)
	}
	return e, e.op.Unlock, nil
}

// criuReady says why CRIU cannot be used on this node, or nil.
func (a *Agent) criuReady() error {
	if a.probeErr != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, a.probeErr)
	}
	if !a.features.CheckOK {
		return fmt.Errorf("%w: criu check fails on node %s (%s); run scripts/install-deps.sh", ErrUnavailable, a.cfg.Name, a.features.CheckOutput)
	}
	return nil
}

// watch waits for a container's shim to exit and records how the container ended, unless an operation
// (stop, checkpoint) already took care of it.
func (a *Agent) watch(e *entry, shimPid int) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := runtime.WaitPid(a.ctx, shimPid); err != nil {
			return // agent closing, or the pid cannot be watched
		}
		e.op.Lock()
		defer e.op.Unlock()
		c := e.snapshot()
		if c.ShimPid != shimPid || c.State != StateRunning {
			return
		}
		a.finishExited(context.Background(), e)
	}()
}

// finishExited records that the container's process ended, and releases its runtime resources. Holds e.op.
func (a *Agent) finishExited(ctx context.Context, e *entry) {
	code := -1
	st, err := runtime.ReadExitStatus(e.exitPath())
	if err == nil {
		code = st.ExitCode
	}
	a.release(ctx, e)
	_ = e.update(func(c *Container) {
		c.State, c.ExitCode, c.FinishedAt, c.Pid, c.ShimPid = StateExited, &code, time.Now(), 0, 0
	})
	a.log.Info("container exited", "container", e.c.Config.Name, "exit_code", code)
}

// release removes runc's record of the container and unmounts its root. Holds e.op.
func (a *Agent) release(ctx context.Context, e *entry) {
	name := e.snapshot().Config.Name
	if err := a.runc.Delete(ctx, name, true); err != nil && !errors.Is(err, runtime.ErrNotFound) {
		a.log.Warn("runc delete failed", "container", name, "err", err)
	}
	if err := runtime.Unmount(e.rootfs()); err != nil {
		a.log.Warn("unmount failed", "container", name, "err", err)
	}
	if err := runtime.UnmountOwnTmpfs(e.tmpfsDir()); err != nil {
		a.log.Warn("unmount failed", "container", name, "err", err)
	}
	_ = e.update(func(c *Container) { c.Lazy = nil }) // no process left to copy memory into
}
