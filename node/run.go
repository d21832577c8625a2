package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferryhq/ferry/node/images"
	"github.com/ferryhq/ferry/node/runtime"
)

// RunRequest asks for a new container.
type RunRequest struct {
	Name        string   `json:"name"`
	Image       string   `json:"image"`
	Args        []string `json:"args,omitempty"` // empty: the image's entrypoint and command
	Env         []string `json:"env,omitempty"`  // KEY=VALUE, over the image's environment
	MemoryBytes int64    `json:"memory_bytes,omitempty"`
	Net         string   `json:"net,omitempty"` // none (default) or host
}

// minMemory is the smallest memory limit accepted: below it runc and the shell cannot even start.
const minMemory = 6 << 20

func (a *Agent) containerConfig(req RunRequest) (ContainerConfig, error) {
	if !ValidName(req.Name) {
		return ContainerConfig{}, fmt.Errorf("%w: container name %q: use lower-case letters, digits, '.', '_' or '-' (at most 63)", ErrInvalid, req.Name)
	}
	if req.Net == "" {
		req.Net = runtime.NetNone
	}
	if req.Net != runtime.NetNone && req.Net != runtime.NetHost {
		return ContainerConfig{}, fmt.Errorf("%w: --net %q: use none or host", ErrInvalid, req.Net)
	}
	if req.MemoryBytes < 0 || (req.MemoryBytes > 0 && req.MemoryBytes < minMemory) {
		return ContainerConfig{}, fmt.Errorf("%w: memory limit %d bytes: use 0 (no limit) or at least 6MiB", ErrInvalid, req.MemoryBytes)
	}
	for _, kv := range req.Env {
		if strings.IndexByte(kv, '=') <= 0 {
			return ContainerConfig{}, fmt.Errorf("%w: environment entry %q: use KEY=VALUE", ErrInvalid, kv)
		}
	}
	img, err := a.images.Get(req.Image)
	if err != nil {
		if errors.Is(err, images.ErrUnknownImage) {
			return ContainerConfig{}, fmt.Errorf("%w: no image %q on node %s; import it with ferry image import %s PATH", ErrNotFound, req.Image, a.cfg.Name, req.Image)
		}
		return ContainerConfig{}, err
	}
	args := req.Args
	if len(args) == 0 {
		args = append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
	}
	if len(args) == 0 {
		return ContainerConfig{}, fmt.Errorf("%w: image %s has no command; give one after --", ErrInvalid, req.Image)
	}
	return ContainerConfig{
		Name: req.Name, Image: img.Name, ImageID: img.ID, Layers: img.Layers, Args: args,
		Env: append(append([]string{}, img.Config.Env...), req.Env...), Cwd: img.Config.WorkingDir,
		MemoryBytes: req.MemoryBytes, Net: req.Net,
	}, nil
}

// Run creates and starts a container. On any failure nothing of it is left behind.
func (a *Agent) Run(ctx context.Context, req RunRequest) (Container, error) {
	cfg, err := a.containerConfig(req)
	if err != nil {
		return Container{}, err
	}
	e, err := a.register(cfg)
	if err != nil {
		return Container{}, err
	}
	e.op.Lock()
	defer e.op.Unlock()
	if err := a.start(ctx, e, runtime.ShimConfig{Mode: runtime.ShimRun}); err != nil {
		a.forget(e)
		return Container{}, err
	}
	a.log.Info("container started", "container", cfg.Name, "image", cfg.Image, "pid", e.snapshot().Pid)
	return e.snapshot(), nil
}

// register reserves the name and creates the container's directory and record.
func (a *Agent) register(cfg ContainerConfig) (*entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.containers[cfg.Name]; ok {
		return nil, fmt.Errorf("%w: a container named %q exists on node %s; remove it (ferry rm %s) or pick another name", ErrExists, cfg.Name, a.cfg.Name, cfg.Name)
	}
	dir := filepath.Join(a.cfg.DataDir, "containers", cfg.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e := &entry{dir: dir, c: Container{Config: cfg, State: StateCreated, CreatedAt: time.Now()}}
	if err := e.update(func(*Container) {}); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	a.containers[cfg.Name] = e
	return e, nil
}

// forget removes a container that never ran (or whose record is being dropped) and its directory.
func (a *Agent) forget(e *entry) {
	name := e.snapshot().Config.Name
	a.mu.Lock()
	delete(a.containers, name)
	a.mu.Unlock()
	_ = runtime.Unmount(e.rootfs())
	_ = runtime.UnmountOwnTmpfs(e.tmpfsDir())
	_ = os.RemoveAll(e.dir)
}

// start mounts the container's root for its current generation, writes the bundle and starts a shim in the
// given mode (run or restore). On failure it undoes the mount and runc's record. Holds e.op.
func (a *Agent) start(ctx context.Context, e *entry, sc runtime.ShimConfig) error {
	c := e.snapshot()
	lower, err := a.layerDirs(c.Config)
	if err != nil {
		return err
	}
	if err := runtime.MountOverlay(lower, e.upperDir(c.Generation), e.workDir(c.Generation), e.rootfs()); err != nil {
		return err
	}
	if err := a.writeCriuConfig(e, c.Config.Net); err != nil {
		_ = runtime.Unmount(e.rootfs())
		return err
	}
	spec := runtime.BuildSpec(runtime.SpecConfig{
		Hostname: c.Config.Name, RootfsPath: e.rootfs(), Args: c.Config.Args, Env: c.Config.Env, Cwd: c.Config.Cwd,
		MemoryBytes: c.Config.MemoryBytes, Net: c.Config.Net, CgroupsPath: a.cgroupsPath(c.Config.Name), CriuConfig: e.criuConf(),
	})
	if err := runtime.WriteBundle(e.bundle(), spec); err != nil {
		_ = runtime.Unmount(e.rootfs())
		return err
	}
	sc.ID, sc.Bundle, sc.Runc = c.Config.Name, e.bundle(), *a.runc
	sc.Runc.Log = filepath.Join(e.dir, "runc.log")
	sc.LogPath, sc.ExitPath, sc.PidPath = e.logPath(), e.exitPath(), e.pidPath()
	sc.Binary, sc.ShimLog = a.cfg.ShimBinary, e.shimLog()
	started, err := runtime.StartShim(ctx, sc)
	if err != nil {
		a.release(context.WithoutCancel(ctx), e)
		return err
	}
	if err := e.update(func(c *Container) {
		c.State, c.Pid, c.ShimPid, c.ExitCode, c.StartedAt, c.Note = StateRunning, started.Pid, started.ShimPid, nil, time.Now(), ""
	}); err != nil {
		return err
	}
	a.watch(e, started.ShimPid)
	return nil
}

func (a *Agent) layerDirs(cfg ContainerConfig) ([]string, error) {
	img := &images.Image{Name: cfg.Image, ID: cfg.ImageID, Layers: cfg.Layers}
	dirs, err := a.images.LayerDirs(img)
	if err != nil {
		return nil, fmt.Errorf("%w: the layers of image %s (%s) are not on node %s: %v", ErrNotFound, cfg.Image, cfg.ImageID, a.cfg.Name, err)
	}
	return dirs, nil
}
