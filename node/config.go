package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"
)

// DefaultDataDir is where an agent keeps its state unless told otherwise.
const DefaultDataDir = "/var/lib/ferry"

// SocketName is the local API socket's name inside the data directory.
const SocketName = "ferry.sock"

// Config configures an agent.
type Config struct {
	// Name is the node's name (also in cgroup paths). Empty means the host name.
	Name string
	// DataDir holds all state. Empty means DefaultDataDir.
	DataDir string
	// Runc and Criu name the executables; empty means "runc" and "criu" from PATH.
	Runc string
	Criu string
	// ShimBinary is the ferry executable run as `ferry shim`; empty means this executable.
	ShimBinary string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL. Zero means 10 s.
	StopTimeout time.Duration
	// IncomingTimeout is how long a prepared incoming migration waits for its restore before it is removed.
	// Zero means IncomingTimeout (10 min).
	IncomingTimeout time.Duration
	// LazyHold is how long a container started lazily from a snapshot (a clone, a load) has its lazy-pages
	// daemon serve only its page faults before it copies the rest of the memory in the background (not a
	// migrated container: in a drain the next one's downtime would get that copy). It is also how long after a burst of clones the node waits
	// before it starts spares for the next. Zero means DefaultLazyHold; negative: at once, as CRIU does by
	// itself.
	LazyHold time.Duration
	// Logger receives the agent's log. Nil means slog.Default().
	Logger *slog.Logger
	// Faults names failures to inject, for tests of the failure paths (empty in real use):
	// "break-restore" damages a migrated checkpoint's inventory after it was checked, so CRIU's restore fails;
	// "break-manifest" fails every checkpoint and snapshot after CRIU's dump, where their manifest is written.
	// The cluster agent reads others: "refuse-snapshot-copies" refuses every snapshot copy sent to the node;
	// "lose-snapshot-record" fails the write of every snapshot record of the commands the agent serves;
	// "stall-migration-dump" stalls a migration's source after the dump, the container frozen.
	Faults []string
}

// Fault reports whether the named fault is to be injected.
func (c *Config) Fault(name string) bool { return slices.Contains(c.Faults, name) }

// errInjected is the cause of a failure injected by Config.Faults.
var errInjected = errors.New("a failure injected for a test (--fault)")

// DefaultLazyHold is Config.LazyHold's default: a clone's first requests, and the restores of clones started
// beside it, get the cores before the copying of hundreds of megabytes does.
const DefaultLazyHold = time.Second

// DefaultConfig returns a Config with the defaults filled in.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{Name: host, DataDir: DefaultDataDir, StopTimeout: 10 * time.Second, IncomingTimeout: IncomingTimeout, LazyHold: DefaultLazyHold, Logger: slog.Default()}
}

var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`) }) // at first use: see images.digestRE

// ValidName reports whether s can name a node or a container.
func ValidName(s string) bool { return nameRE().MatchString(s) }

// Validate fills zero values with defaults and checks the fields.
func (c *Config) Validate() error {
	def := DefaultConfig()
	if c.Name == "" {
		c.Name = def.Name
	}
	if c.DataDir == "" {
		c.DataDir = def.DataDir
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = def.StopTimeout
	}
	if c.IncomingTimeout == 0 {
		c.IncomingTimeout = def.IncomingTimeout
	}
	if c.LazyHold == 0 {
		c.LazyHold = def.LazyHold
	}
	if c.Logger == nil {
		c.Logger = def.Logger
	}
	if !ValidName(c.Name) {
		return fmt.Errorf("%w: node name %q: use lower-case letters, digits, '.', '_' or '-' (at most 63)", ErrInvalid, c.Name)
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("%w: data dir %q must be an absolute path", ErrInvalid, c.DataDir)
	}
	if c.StopTimeout < 0 {
		return fmt.Errorf("%w: stop timeout %s is negative", ErrInvalid, c.StopTimeout)
	}
	if c.IncomingTimeout < 0 {
		return fmt.Errorf("%w: incoming migration timeout %s is negative", ErrInvalid, c.IncomingTimeout)
	}
	if c.LazyHold > time.Minute {
		return fmt.Errorf("%w: lazy hold %s: at most 1m (the restored container's faults are served one by one meanwhile)", ErrInvalid, c.LazyHold)
	}
	return nil
}

// SocketPath is the local API socket of an agent with this data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }
