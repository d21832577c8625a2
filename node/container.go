package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node/runtime"
)

// Container states.
const (
	StateCreated       = "created"
	StateRunning       = "running"
	StateCheckpointing = "checkpointing"
	StateCheckpointed  = "checkpointed"
	StateRestoring     = "restoring"
	StateMigrating     = "migrating" // frozen on this node while a migration moves it away
	StateExited        = "exited"    // its process ended by itself
	StateStopped       = "stopped"   // stopped by an operator
)

// ContainerConfig is a container's recorded configuration: everything needed to create it again, and what a
// checkpoint carries beside the memory (what `docker commit` and `docker export` lose).
type ContainerConfig struct {
	Name        string   `json:"name"`
	Image       string   `json:"image"`
	ImageID     string   `json:"image_id"`
	Layers      []string `json:"layers"` // bottom first
	Args        []string `json:"args"`
	Env         []string `json:"env,omitempty"`
	Cwd         string   `json:"cwd,omitempty"`
	MemoryBytes int64    `json:"memory_bytes,omitempty"`
	Net         string   `json:"net"`
}

// Container is the agent's record of one container, kept in containers/NAME/container.json.
type Container struct {
	Config     ContainerConfig `json:"config"`
	State      string          `json:"state"`
	Pid        int             `json:"pid,omitempty"`
	ShimPid    int             `json:"shim_pid,omitempty"`
	ExitCode   *int            `json:"exit_code,omitempty"`
	Generation int             `json:"generation"` // bumps with each restore: the overlay dirs are per generation
	Checkpoint string          `json:"checkpoint,omitempty"`
	Restores   int             `json:"restores,omitempty"`
	Note       string          `json:"note,omitempty"` // what the agent found that a person should know
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	// Lazy is the lazy-pages daemon still copying its memory in after a lazy restore (nil once it has).
	Lazy *LazyDaemon `json:"lazy,omitempty"`
}

// entry is a container held by the agent. op serialises operations on it (run, stop, checkpoint, ...);
// mu guards c. Take op before mu, never the other way.
type entry struct {
	op  sync.Mutex
	mu  sync.Mutex
	c   Container
	dir string
}

// snapshot returns a copy of the record.
func (e *entry) snapshot() Container {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.c
	c.Config.Args = append([]string(nil), c.Config.Args...)
	c.Config.Env = append([]string(nil), c.Config.Env...)
	c.Config.Layers = append([]string(nil), c.Config.Layers...)
	return c
}

// update changes the record under mu and saves it.
func (e *entry) update(fn func(c *Container)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn(&e.c)
	return e.saveLocked()
}

func (e *entry) saveLocked() error {
	b, err := json.MarshalIndent(&e.c, "", "  ")
	if err != nil {
		return err
	}
	return runtime.WriteFileAtomic(filepath.Join(e.dir, "container.json"), b, 0o600)
}

// Paths inside a container's directory.
func (e *entry) bundle() string          { return e.dir }
func (e *entry) rootfs() string          { return filepath.Join(e.dir, "rootfs") }
func (e *entry) logPath() string         { return filepath.Join(e.dir, "container.log") }
func (e *entry) exitPath() string        { return filepath.Join(e.dir, "exit.json") }
func (e *entry) pidPath() string         { return filepath.Join(e.dir, "init.pid") }
func (e *entry) shimLog() string         { return filepath.Join(e.dir, "shim.log") }
func (e *entry) criuConf() string        { return filepath.Join(e.dir, "criu.conf") }
func (e *entry) tmpfsDir() string        { return filepath.Join(e.dir, "restore-tmpfs") } // see runtime.Tmpfs
func (e *entry) genDir(gen int) string   { return filepath.Join(e.dir, fmt.Sprintf("layer-%d", gen)) }
func (e *entry) upperDir(gen int) string { return filepath.Join(e.genDir(gen), "upper") }
func (e *entry) workDir(gen int) string  { return filepath.Join(e.genDir(gen), "work") }

func loadContainer(dir string) (*entry, error) {
	b, err := os.ReadFile(filepath.Join(dir, "container.json"))
	if err != nil {
		return nil, err
	}
	e := &entry{dir: dir}
	if err := json.Unmarshal(b, &e.c); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", filepath.Join(dir, "container.json"), err)
	}
	return e, nil
}

// loadContainers reads every container record under dir.
func loadContainers(dir string) (map[string]*entry, []error) {
	out := map[string]*entry{}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, []error{err}
	}
	var errs []error
	for _, d := range ents {
		if !d.IsDir() || !ValidName(d.Name()) {
			continue
		}
		e, err := loadContainer(filepath.Join(dir, d.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[e.c.Config.Name] = e
	}
	return out, errs
}
