package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

type agentFlags struct {
	dev     bool
	name    string
	dataDir string
	debug   bool
}

func newAgentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent [--dev] [--name NAME] [--data-dir DIR]",
		Short: "Run the node agent (as root)",
		Long: `Run the node agent: it runs containers with runc, checkpoints and restores them with CRIU, and serves
the API on a root-only unix socket in its data directory.

With --dev the agent runs as a single node with its data in a new temporary directory (or --data-dir), and
prints the line that points the command line at it.`,
		Args: needArgs(0, 0, "ferry agent [--dev] [--name NAME] [--data-dir DIR]"),
		RunE: func(cmd *cobra.Command, args []string) error { return runAgent(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.dev, "dev", false, "single-node development mode: data in a temporary directory unless --data-dir is given")
	fl.StringVar(&f.name, "name", "", "node name (default: the host name)")
	fl.StringVar(&f.dataDir, "data-dir", "", "state directory (default "+node.DefaultDataDir+")")
	fl.BoolVar(&f.debug, "debug", false, "log at debug level")
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
	cfg := node.DefaultConfig()
	cfg.Logger = log
	if f.name != "" {
		cfg.Name = f.name
	}
	if f.dataDir != "" {
		abs, err := filepath.Abs(f.dataDir)
		if err != nil {
			return err
		}
		cfg.DataDir = abs
	} else if f.dev {
		dir, err := os.MkdirTemp("", "ferry-dev-")
		if err != nil {
			return err
		}
		cfg.DataDir = dir
	}
	a, err := node.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	sock := node.SocketPath(a.DataDir())
	l, err := listenRootOnly(sock)
	if err != nil {
		return err
	}
	log.Info("agent ready", "node", a.Name(), "data_dir", a.DataDir(), "socket", sock)
	if f.dev {
		fmt.Fprintf(os.Stderr, "\nferry agent (dev) is serving node %s. Point the command line at it with:\n\n    export FERRY_ADDR=unix://%s\n\n", a.Name(), sock)
	}
	err = api.NewServer(a, log).Serve(ctx, l)
	log.Info("agent stopping; containers keep running and a restarted agent re-attaches to them")
	return err
}

// listenRootOnly listens on a unix socket that only root can use: the directory is 0700 and the socket 0600.
// A stale socket left by a dead agent is replaced; one that answers belongs to a running agent: an error.
func listenRootOnly(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("an agent is already serving %s; stop it first or use another --data-dir", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o077)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
