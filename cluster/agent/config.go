package agent

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/transfer/sshx"
)

// DefaultPort is the agent's SSH port; memberlist gossips on the next port.
const DefaultPort = 7400

// DefaultShutdownTimeout bounds the evacuation on shutdown (the systemd unit of scripts/provision.sh gives
// the agent a little more: TimeoutStopSec).
const DefaultShutdownTimeout = 4 * time.Minute

// Config configures an agent.
type Config struct {
	// Node configures the local node (name, data dir, runc, criu); Name and DataDir are set from below.
	Node node.Config
	// Name is the node's name; DataDir holds everything the agent keeps.
	Name    string
	DataDir string
	// Bind is the host:port of the SSH port. Port 0 picks a free port (tests). The host must be an address
	// other agents can reach unless Advertise says otherwise.
	Bind string
	// Advertise is the address other agents dial; empty means Bind's address once bound.
	Advertise string
	// GossipPort is memberlist's port; 0 means the SSH port + 1 (or a free port when that is 0).
	GossipPort int
	// Join lists agents' SSH addresses to join through (with Token) on the first start.
	Join  []string
	Token string
	// BootstrapExpect, on the first agent, waits for that many agents before making the raft cluster.
	BootstrapExpect int
	// ControllerKey is an authorized_keys file whose keys become controllers when the cluster is made.
	ControllerKey string
	// Lanes is how many SSH connections a bulk transfer to another agent (a migration's page tunnel, a
	// directory stream) spreads over: one connection is bound by one core's encryption and one reader.
	// A directory stream uses no more lanes than the process has cores (streamLanes). Zero: DefaultLanes.
	Lanes int
	// MemoryLimit, when positive, is a soft limit for the Go heap of the whole process
	// (runtime/debug.SetMemoryLimit), unless GOMEMLIMIT is set. Streams churn through frame buffers and
	// SSH packets; without a limit the collector lets the heap grow to twice what is live. Zero: none.
	MemoryLimit int64
	// EvacuateOnShutdown makes Shutdown drain this node (move its containers to others) before the agent
	// stops, for at most ShutdownTimeout, EvacuateParallel migrations at a time.
	EvacuateOnShutdown bool
	ShutdownTimeout    time.Duration
	EvacuateParallel   int
	// FailoverDelay is the fencing delay of a failover: how long a node must have been down (memberlist)
	// and silent to raft before the leader restores its containers with periodic snapshots on other nodes
	// from their latest snapshots. Zero: DefaultFailoverDelay, or FastFailoverDelay with Fast. Negative: no
	// failover (a dead node's containers stay placed on it until it returns or an operator loads them).
	FailoverDelay time.Duration
	// Fast shortens raft and gossip timeouts (tests and the local dev cluster on one machine).
	Fast bool
	// Logger receives the agent's log; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultFailoverDelay is the default Config.FailoverDelay: long enough that a host that is only rebooting
// its agent, or a link that flaps, does not cost its containers the work since their last snapshots.
const DefaultFailoverDelay = time.Minute

// FastFailoverDelay is Config.FailoverDelay with Fast (hosts sharing one machine, tests).
const FastFailoverDelay = 5 * time.Second

// DefaultLanes is the default Config.Lanes. Four connections carried 2x what one did between two agents on
// 2 cores (transfer/sshx BenchmarkSeparateConnections), and more only add memory.
const DefaultLanes = 4

// DefaultMemoryLimit is the agent process's soft heap limit (the ferry agent command sets it): moving a
// 256 MiB directory over four lanes peaked at 94 MiB of resident memory without a limit and 58 MiB with
// a 48 MiB one, at the same speed.
const DefaultMemoryLimit = 64 << 20

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Node: node.DefaultConfig(), Bind: net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort)), Logger: slog.Default(),
		ShutdownTimeout: DefaultShutdownTimeout, EvacuateParallel: 2}
}

// Validate fills defaults and checks the fields against each other.
func (c *Config) Validate() error {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Lanes == 0 {
		c.Lanes = DefaultLanes
	}
	if c.Lanes < 1 || c.Lanes > sshx.MaxSlots {
		return fmt.Errorf("lanes %d: want 1..%d", c.Lanes, sshx.MaxSlots)
	}
	if c.Name != "" {
		c.Node.Name = c.Name
	}
	if c.DataDir != "" {
		c.Node.DataDir = c.DataDir
	}
	c.Node.Logger = c.Logger
	if err := c.Node.Validate(); err != nil {
		return err
	}
	c.Name, c.DataDir = c.Node.Name, c.Node.DataDir
	host, port, err := net.SplitHostPort(c.Bind)
	if err != nil {
		return fmt.Errorf("%w: --bind %q: use HOST:PORT (%v)", node.ErrInvalid, c.Bind, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("%w: --bind %q: the port is not a number", node.ErrInvalid, c.Bind)
	}
	if ip := net.ParseIP(host); ip == nil && host != "" {
		return fmt.Errorf("%w: --bind %q: use an IP address", node.ErrInvalid, c.Bind)
	}
	if len(c.Join) > 0 && c.Token == "" {
		return fmt.Errorf("%w: --join needs --token (get one with `ferry cluster token` on a member)", node.ErrInvalid)
	}
	if c.EvacuateOnShutdown && c.ShutdownTimeout < 10*time.Second {
		return fmt.Errorf("%w: --shutdown-timeout %s with --evacuate-on-shutdown: give the drain at least 10s (default %s)", node.ErrInvalid, c.ShutdownTimeout, DefaultShutdownTimeout)
	}
	if c.FailoverDelay == 0 {
		c.FailoverDelay = DefaultFailoverDelay
		if c.Fast {
			c.FailoverDelay = FastFailoverDelay
		}
	}
	if c.EvacuateParallel == 0 {
		c.EvacuateParallel = 2
	}
	if c.EvacuateParallel < 1 || c.EvacuateParallel > maxDrainParallel {
		return fmt.Errorf("%w: evacuation parallelism %d: use 1 to %d", node.ErrInvalid, c.EvacuateParallel, maxDrainParallel)
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 5 {
		return fmt.Errorf("%w: --bootstrap-expect %d: use 1 to 5 (raft voters)", node.ErrInvalid, c.BootstrapExpect)
	}
	if c.BootstrapExpect > 1 && len(c.Join) > 0 {
		return fmt.Errorf("%w: --bootstrap-expect is for the first agent; joining agents take --join and --token only", node.ErrInvalid)
	}
	return nil
}

// timing is raft and gossip timing for this config.
func (c *Config) failoverTimeouts() (heartbeat, election, lease time.Duration) {
	if c.Fast {
		return 500 * time.Millisecond, 500 * time.Millisecond, 250 * time.Millisecond
	}
	return 0, 0, 0 // raft's defaults (1 s): failover in about 1-2 s
}
