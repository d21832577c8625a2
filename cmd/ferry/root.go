package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

// globals are the flags every subcommand shares.
type globals struct {
	addr     string
	identity string
	output   string
}

var g globals

// usageError marks an error as the caller's mistake: exit status 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitError carries an exit status chosen by the command (ferry exec passes on its command's).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func exitCode(err error) int {
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.Is(err, node.ErrInvalid):
		return 2
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Ferry moves running containers between hosts, checkpoints and restores them",
		Long: `Ferry runs containers with runc, checkpoints and restores them with CRIU, and (in a cluster of agents)
moves them live between hosts.

The command line talks to an agent: by default the local one's root-only socket
(` + node.DefaultDataDir + `/` + node.SocketName + `), or the one named by --addr or FERRY_ADDR.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return usagef("-o %q: use table or json", g.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see ferry %s --help)", err, c.Name())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", envOr("FERRY_ADDR", ""), "agent address: unix:///PATH or ssh://HOST:PORT (env FERRY_ADDR; default: the local agent's socket)")
	pf.StringVar(&g.identity, "identity", envOr("FERRY_IDENTITY", ""), "SSH private key file for ssh:// addresses (env FERRY_IDENTITY)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(newAgentCmd(), newShimCmd(), newImageCmd(), newRunCmd(), newPsCmd(), newLogsCmd(), newExecCmd(),
		newStopCmd(), newRmCmd(), newCheckpointCmd(), newRestoreCmd(), newNodeCmd(), withClusterCA(newClusterCmd()))
	root.AddCommand(newOperatorCmd())
	root.AddCommand(newMigrateCmd())
	root.AddCommand(newSnapshotCmd(), newCloneCmd(), newTemplateCmd())
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// client returns the API client for the agent named by --addr.
func client() (*api.Client, error) {
	addr := g.addr
	if addr == "" {
		return api.NewUnixClient(node.SocketPath(node.DefaultDataDir)), nil
	}
	switch {
	case strings.HasPrefix(addr, "unix://"):
		return api.NewUnixClient(strings.TrimPrefix(addr, "unix://")), nil
	case strings.HasPrefix(addr, "ssh://"):
		return sshClient(addr)
	case strings.HasPrefix(addr, "/"):
		return api.NewUnixClient(addr), nil
	}
	return nil, usagef("--addr %q: use unix:///PATH or ssh://HOST:PORT", addr)
}

func jsonOut() bool { return g.output == "json" }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// needArgs returns a cobra.PositionalArgs that reports a usage error naming what is missing.
func needArgs(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usagef("usage: %s (see ferry %s --help)", what, cmd.Name())
		}
		return nil
	}
}

func printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}
