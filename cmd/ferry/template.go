package main

import (
	"os"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newTemplateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template create",
		Short: "Name snapshots taken to serve as clone sources",
	}
	var (
		from   string
		copies int
	)
	create := &cobra.Command{
		Use:   "create NAME [--from CONTAINER] [--copies N]",
		Short: "Snapshot a warm container as template NAME, for ferry clone",
		Long: `Snapshot running container CONTAINER (default: the container named NAME) and name the snapshot template
NAME. ferry clone NAME and ferry clone --snapshot NAME then start clones from it, also after the container
is gone. The container goes on running. Each node holding the template keeps a few clones' start-up done
ahead (CRIU lazy-pages daemons and shims, idle, at the lowest priority); the command returns once the first is
ready, so the first clone does not wait for one. Remove a template with ferry snapshot rm CONTAINER ID.`,
		Args: needArgs(1, 1, "ferry template create NAME [--from CONTAINER]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				from = args[0]
			}
			c, err := client()
			if err != nil {
				return err
			}
			res, err := c.CreateSnapshot(cmd.Context(), api.SnapshotRequest{Container: from, Template: args[0], Copies: &copies}, progressPrinter("template "+args[0]))
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, res)
			}
			printSnapshotResult(res)
			return nil
		},
	}
	create.Flags().StringVar(&from, "from", "", "the container to snapshot (default: NAME)")
	create.Flags().IntVar(&copies, "copies", 1, "how many other nodes keep a copy")
	cmd.AddCommand(create)
	return cmd
}
