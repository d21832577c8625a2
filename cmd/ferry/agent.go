package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/cluster/agent"
	"github.com/ferryhq/ferry/node"
	"github.com/spf13/cobra"
)

type agentFlags struct {
	dev             bool
	name            string
	dataDir         string
	bind            string
	advertise       string
	join            []string
	token           string
	bootstrapExpect int
	controllerKey   string
	fast            bool
	debug           bool
	faults          []string
	lanes           int
	evacuate        bool
	shutdownTimeout time.Duration
	failoverDelay   time.Duration
	lazyHold        time.Duration
}

func newAgentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent [--dev] [--name NAME] [--data-dir DIR] [--bind ADDR] [--join ADDR,... --token TOKEN] [--bootstrap-expect N] [--evacuate-on-shutdown]",
		Short: "Run the node agent (as root)",
		Long: `Run the node agent: it runs containers with runc, checkpoints and restores them with CRIU, takes part in
the cluster (raft and gossip), and serves the API on its SSH port (--bind) and on a root-only unix socket in
its data directory.

The first agent makes the cluster. Others join it with a token from ` + "`ferry cluster token`" + `:
    ferry agent --name vg-2 --bind 10.77.0.12:7400 --join 10.77.0.11:7400 --token TOKEN
An agent restarted with its data directory rejoins by itself.

With --dev the agent is a one-node cluster on 127.0.0.1 with its data in a new temporary directory (unless
--data-dir), and prints the line that points the command line at it.`,
		Args: needArgs(0, 0, "ferry agent [flags] (see ferry agent --help)"),
		RunE: func(cmd *cobra.Command, args []string) error { return runAgent(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dev, "dev", false, "one-node development mode on 127.0.0.1, data in a temporary directory unless --data-dir")
	fl.StringVar(&f.name, "name", "", "node name (default: the host name)")
	fl.StringVar(&f.dataDir, "data-dir", "", "state directory (default "+node.DefaultDataDir+")")
	fl.StringVar(&f.bind, "bind", "", fmt.Sprintf("SSH address HOST:PORT (default 0.0.0.0:%d; --dev: 127.0.0.1:0); gossip uses PORT+1", agent.DefaultPort))
	fl.StringVar(&f.advertise, "advertise", "", "address other agents dial (default: the --bind address)")
	fl.StringSliceVar(&f.join, "join", nil, "SSH addresses of cluster members to join through (first start only)")
	fl.StringVar(&f.token, "token", os.Getenv("FERRY_JOIN_TOKEN"), "join token from `ferry cluster token` (env FERRY_JOIN_TOKEN)")
	fl.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "first agent: wait for this many agents before making the raft cluster")
	fl.StringVar(&f.controllerKey, "controller-key", "", "SSH public key file of the first controller (when the cluster is made)")
	fl.BoolVar(&f.evacuate, "evacuate-on-shutdown", false, "on SIGTERM, drain this node (its containers move live to others) before exiting")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", agent.DefaultShutdownTimeout, "with --evacuate-on-shutdown: the longest the evacuation may take")
	fl.DurationVar(&f.failoverDelay, "failover-delay", 0, fmt.Sprintf("how long a node must be dead before its containers with periodic snapshots are restored elsewhere (default %s, %s with --fast-failover); negative: never", agent.DefaultFailoverDelay, agent.FastFailoverDelay))
	fl.DurationVar(&f.lazyHold, "lazy-hold", node.DefaultLazyHold, "after a clone's or a snapshot load's lazy restore, how long only its page faults are served before the rest of its memory is copied in (negative: at once)")
	fl.BoolVar(&f.fast, "fast-failover", false, "shorter raft and gossip timeouts, for hosts sharing one machine")
	fl.BoolVar(&f.debug, "debug", false, "log at debug level")
	fl.StringArrayVar(&f.faults, "fault", nil, "inject a failure (tests only): corrupt-pages, break-restore, refuse-snapshot-copies, break-manifest, lose-snapshot-record, stall-migration-dump")
	_ = fl.MarkHidden("fast-failover")
	_ = fl.MarkHidden("fault")
	fl.IntVar(&f.lanes, "lanes", 0, fmt.Sprintf("SSH connections per bulk transfer to another agent (default %d)", agent.DefaultLanes))
	_ = fl.MarkHidden("lanes")
	return cmd
}

func runAgent(ctx context.Context, f agentFlags) error {
	if os.Geteuid() != 0 {
		return errors.New("the agent must run as root (it mounts filesystems and runs runc and CRIU); try sudo")
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := agent.DefaultConfig()
	cfg.Logger, cfg.Name, cfg.Join, cfg.Token = log, f.name, f.join, f.token
	cfg.BootstrapExpect, cfg.ControllerKey, cfg.Fast, cfg.Advertise = f.bootstrapExpect, f.controllerKey, f.fast, f.advertise
	cfg.Node.Faults, cfg.Node.LazyHold = f.faults, f.lazyHold
	cfg.Lanes = f.lanes
	cfg.MemoryLimit = agent.DefaultMemoryLimit
	cfg.EvacuateOnShutdown, cfg.ShutdownTimeout = f.evacuate, f.shutdownTimeout
	cfg.FailoverDelay = f.failoverDelay
	if f.dev {
		cfg.Bind, cfg.Fast = "127.0.0.1:0", true
	}
	if f.bind != "" {
		cfg.Bind = f.bind
	}
	switch {
	case f.dataDir != "":
		abs, err := filepath.Abs(f.dataDir)
		if err != nil {
			return err
		}
		cfg.DataDir = abs
	case f.dev:
		dir, err := os.MkdirTemp("", "ferry-dev-")
		if err != nil {
			return err
		}
		cfg.DataDir = dir
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	a, err := agent.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if f.dev {
		fmt.Fprintf(os.Stderr, "\nferry agent (dev) is serving node %s. Point the command line at it with:\n\n    export FERRY_ADDR=unix://%s\n\n",
			a.Name(), node.SocketPath(cfg.DataDir))
	}
	select {
	case <-ctx.Done():
	case <-a.Left():
		log.Info("this node left the cluster (ferry node leave); the agent stops. Starting it again joins it again")
		a.Close()
		return nil
	}
	if f.evacuate {
		log.Info("agent stopping: evacuating this node first", "bound", f.shutdownTimeout)
	} else {
		log.Info("agent stopping; containers keep running and a restarted agent re-attaches to them")
	}
	a.Shutdown()
	return nil
}
