package main

import (
	"fmt"
	"os"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newCloneCmd() *cobra.Command {
	var req api.CloneRequest
	cmd := &cobra.Command{
		Use:   "clone NAME | --snapshot ID [--count K] [--node NODE | --spread] [--name-prefix P]",
		Short: "Start new containers from a checkpoint of a warm container",
		Long: `Start K new containers from one snapshot, each with its own name, PID namespace, writable layer and log,
each going on from the snapshot's state independently. --snapshot names the snapshot by ID or template
name; NAME names a template (ferry template create), or else a running container, of which a snapshot is
taken first. The snapshot is sent once to each node that needs it and kept there for later clones. Where
the node's CRIU allows it, clones start before their memory is in (lazy restore from the local images).
Clones are named P-1, P-2, ... (default P: the source container's name and "-clone").`,
		Args: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (req.Snapshot != "") || len(args) > 1 {
				return usagef("usage: ferry clone NAME | --snapshot ID [--count K] [--node NODE | --spread] [--name-prefix P]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				req.Container = args[0]
			}
			if req.Count < 1 {
				return usagef("--count %d: use 1 or more", req.Count)
			}
			if req.Node != "" && req.Spread {
				return usagef("--node and --spread exclude each other; give one")
			}
			c, err := client()
			if err != nil {
				return err
			}
			res, err := c.Clone(cmd.Context(), req, progressPrinter("clone"))
			if err != nil {
				return err
			}
			if jsonOut() {
				if err := printJSON(os.Stdout, res); err != nil {
					return err
				}
			} else {
				printCloneResult(res)
			}
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d of %d clones did not start", len(res.Failed), len(res.Failed)+len(res.Clones))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Snapshot, "snapshot", "", "snapshot ID or template name to clone")
	fl.IntVar(&req.Count, "count", 1, "how many clones")
	fl.StringVar(&req.Node, "node", "", "start every clone on this node")
	fl.BoolVar(&req.Spread, "spread", false, "spread the clones over the alive nodes")
	fl.StringVar(&req.NamePrefix, "name-prefix", "", "name the clones P-1, P-2, ...")
	return cmd
}

func printCloneResult(res *api.CloneResult) {
	fmt.Printf("%d clone(s) of %s from snapshot %s in %s\n", len(res.Clones), res.Source, res.Snapshot, ms(res.Took))
	if len(res.CopiedTo) > 0 {
		fmt.Printf("  snapshot sent to %v in %s\n", res.CopiedTo, ms(res.CopyTook))
	}
	var rows [][]string
	for _, c := range res.Clones {
		mode := "full restore"
		if c.Lazy {
			mode = "lazy restore"
		}
		rows = append(rows, []string{c.Container, c.Node, fmt.Sprint(c.Pid), ms(c.Took), mode})
	}
	_ = table(os.Stdout, []string{"NAME", "NODE", "PID", "STARTED IN", "HOW"}, rows)
	for _, f := range res.Failed {
		fmt.Fprintf(os.Stderr, "failed: %s\n", f)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
}
