package main

import (
	"fmt"
	"os"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var (
		req    api.RunRequest
		memory string
	)
	cmd := &cobra.Command{
		Use:   "run --name NAME [--env K=V]... [--memory SIZE] [--net none|host] [--snapshot-every DURATION --keep N] IMAGE [-- CMD ARGS...]",
		Short: "Create and start a container",
		Long: `Create and start a container from IMAGE. Without a command after --, the image's own runs.
The cluster's leader places it on an eligible, alive node with the image and enough free memory, spreading
containers out, unless --node pins it. Its stdout and stderr go to its log (ferry logs NAME).
With --snapshot-every the cluster snapshots it that often while it runs (copied to one other node), keeping
the --keep newest of those snapshots (ferry snapshot ls NAME).`,
		Args: needArgs(1, -1, "ferry run --name NAME IMAGE [-- CMD ARGS...]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Name == "" {
				return usagef("--name is required: ferry run --name NAME IMAGE [-- CMD ARGS...]")
			}
			if memory != "" {
				n, err := parseSize(memory)
				if err != nil {
					return usagef("--memory: %v", err)
				}
				req.MemoryBytes = n
			}
			if req.Keep != 0 && req.SnapshotEvery == 0 {
				return usagef("--keep needs --snapshot-every")
			}
			if req.SnapshotEvery < 0 || req.Keep < 0 {
				return usagef("--snapshot-every and --keep must not be negative")
			}
			req.Image, req.Args = args[0], args[1:]
			c, err := client()
			if err != nil {
				return err
			}
			ct, err := c.RunPlaced(cmd.Context(), req)
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, ct)
			}
			fmt.Printf("%s (on %s)\n", ct.Config.Name, ct.Node)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Name, "name", "", "container name (required)")
	fl.StringArrayVar(&req.Env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringVar(&memory, "memory", "", "memory limit, e.g. 256m or 1g (default: none)")
	fl.StringVar(&req.Net, "net", "none", "network: none (own namespace, loopback only) or host")
	fl.StringVar(&req.Node, "node", "", "run on this node instead of where the scheduler places it")
	fl.DurationVar(&req.SnapshotEvery, "snapshot-every", 0, "snapshot the container this often while it runs (e.g. 10m)")
	fl.IntVar(&req.Keep, "keep", 0, "with --snapshot-every: how many of those snapshots to keep (default 3)")
	fl.BoolVar(&req.NoMigrate, "no-migrate", false, "keep it on its node: migrations refuse it, a drain leaves it there and says so")
	return cmd
}
