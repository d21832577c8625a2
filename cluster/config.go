package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// Peer names a raft server: its node name (the raft server ID) and the
// address its raft transport listens on.
type Peer struct {
	Name     string `json:"name"`
	RaftAddr string `json:"raft_addr"`
}

// Config configures a Store. Zero durations and counts take the values of
// DefaultConfig when Open runs.
type Config struct {
	// Name is this node's name and its raft server ID. Required.
	Name string
	// DataDir holds raft.db (log and stable store) and snapshots/. Required
	// unless LogStore, StableStore and SnapshotStore are all set.
	DataDir string

	// RaftBind is the host:port the TCP transport listens on when neither
	// Transport nor StreamLayer is set. Port 0 picks a free port.
	RaftBind string
	// RaftAdvertise is the address other servers dial; empty means the
	// address RaftBind ends up bound to. Must not be an unspecified IP.
	RaftAdvertise string
	// StreamLayer, if set, carries raft over it (the SSH stream layer);
	// RaftBind is then ignored.
	StreamLayer raft.StreamLayer
	// Transport, if set, is used as is (tests: raft.InmemTransport). The
	// Store does not close a Transport it did not create.
	Transport raft.Transport

	// Bootstrap makes a node with no raft state bootstrap a new cluster from
	// Peers (empty Peers: this node alone). Ignored when state exists, so a
	// restarted node rejoins from its data dir.
	Bootstrap bool
	Peers     []Peer
	// BootstrapExpect, when > 0, tells the agent to wait for that many
	// members and bootstrap with them (see BootstrapWhenExpected). It
	// excludes Bootstrap.
	BootstrapExpect int
	// MaxVoters is the most voters Join adds; later servers join as
	// non-voters. Default 5.
	MaxVoters int

	// Forwarder sends writes made on a follower to the leader. Nil means
	// writes on a follower fail with ErrNoForwarder.
	Forwarder Forwarder

	// Optional stores; nil means on disk in DataDir.
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore

	// Raft timing (see raft.Config).
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// ApplyTimeout bounds Apply and membership changes when ctx has no deadline.
	ApplyTimeout time.Duration

	// Snapshots: check every SnapshotInterval, snapshot when SnapshotThreshold
	// entries are past the last one, keep TrailingLogs entries and
	// SnapshotRetain snapshot files.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotRetain    int

	// Logger receives the Store's and raft's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with raft's default timing (failover in
// about 1-2 s), MaxVoters 5 and a 10 s apply timeout. Name and DataDir must
// still be set.
func DefaultConfig() Config {
	rc := raft.DefaultConfig()
	return Config{
		RaftBind:           "127.0.0.1:7001",
		MaxVoters:          5,
		HeartbeatTimeout:   rc.HeartbeatTimeout,
		ElectionTimeout:    rc.ElectionTimeout,
		LeaderLeaseTimeout: rc.LeaderLeaseTimeout,
		CommitTimeout:      rc.CommitTimeout,
		ApplyTimeout:       10 * time.Second,
		SnapshotInterval:   rc.SnapshotInterval,
		SnapshotThreshold:  rc.SnapshotThreshold,
		TrailingLogs:       rc.TrailingLogs,
		SnapshotRetain:     2,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setDur(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	setDur(&c.ElectionTimeout, d.ElectionTimeout)
	setDur(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	setDur(&c.CommitTimeout, d.CommitTimeout)
	setDur(&c.ApplyTimeout, d.ApplyTimeout)
	setDur(&c.SnapshotInterval, d.SnapshotInterval)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = d.SnapshotRetain
	}
	if c.MaxVoters == 0 {
		c.MaxVoters = d.MaxVoters
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks the fields against each other, after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("Name is empty; give the node a name (--name)"))
	}
	onDisk := c.LogStore == nil || c.StableStore == nil || c.SnapshotStore == nil
	if onDisk && c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is empty; give a data directory (--data-dir)"))
	}
	if c.Transport == nil && c.StreamLayer == nil && c.RaftBind == "" {
		errs = append(errs, errors.New("RaftBind is empty and no Transport or StreamLayer is set; give a bind address (--bind)"))
	}
	if c.Bootstrap && c.BootstrapExpect > 0 {
		errs = append(errs, fmt.Errorf("Bootstrap and BootstrapExpect (%d) exclude each other; use one", c.BootstrapExpect))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Errorf("BootstrapExpect is %d; it must be 0 or more", c.BootstrapExpect))
	}
	if len(c.Peers) > 0 && !c.Bootstrap {
		errs = append(errs, fmt.Errorf("Peers (%d) is set but Bootstrap is false; Peers only seed a bootstrap", len(c.Peers)))
	}
	if c.MaxVoters < 1 {
		errs = append(errs, fmt.Errorf("MaxVoters is %d; it must be at least 1", c.MaxVoters))
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("ElectionTimeout (%s) is below HeartbeatTimeout (%s); raise it", c.ElectionTimeout, c.HeartbeatTimeout))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("LeaderLeaseTimeout (%s) is above HeartbeatTimeout (%s); lower it", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.Bootstrap && len(c.Peers) > 0 && !containsPeer(c.Peers, c.Name) {
		errs = append(errs, fmt.Errorf("Peers does not include this node %q; add it", c.Name))
	}
	return errors.Join(errs...)
}

func containsPeer(ps []Peer, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.Name)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	rc.BatchApplyCh = true
	rc.Logger = hclogFor(c.Logger, "raft")
	return rc
}
