package main

import (
	"fmt"
	"os"

	"github.com/ferryhq/ferry/node"
	"github.com/spf13/cobra"
)

func newRestoreCmd() *cobra.Command {
	var opts node.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore [--checkpoint ID] NAME",
		Short: "Restore a container from its latest (or a given) checkpoint",
		Long: `Restore a container that is not running from a checkpoint. Every file is checked against the
checkpoint's manifest first; a checkpoint that does not match is refused and nothing is changed.`,
		Args: needArgs(1, 1, "ferry restore [--checkpoint ID] NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			rep, err := c.Restore(cmd.Context(), args[0], opts, progressPrinter("restore "+args[0]))
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, rep)
			}
			fmt.Printf("restored %s on %s from checkpoint %s: pid %d, took %s (manifest check %s)\n",
				rep.Container, rep.Node, rep.Checkpoint, rep.Pid, ms(rep.Took), ms(rep.Verify))
			if s := rep.CRIU; s != nil {
				fmt.Printf("  CRIU: forking %s, restore %s, pages restored %d\n", ms(s.ForkingTime), ms(s.RestoreTime), s.PagesRestored)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Checkpoint, "checkpoint", "", "checkpoint ID (default: the latest)")
	return cmd
}
