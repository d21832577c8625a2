package main

import (
	"fmt"
	"os"

	"github.com/ferryhq/ferry/node"
	"github.com/spf13/cobra"
)

func newCheckpointCmd() *cobra.Command {
	var opts node.CheckpointOptions
	cmd := &cobra.Command{
		Use:   "checkpoint [--leave-running] NAME",
		Short: "Checkpoint a running container with CRIU",
		Long: `Checkpoint a running container: CRIU's images of its memory and state, its writable layer's changes and
its recorded configuration, with a manifest of sha256 sums. Without --leave-running the container stops
(state checkpointed) until ferry restore. Prints CRIU's dump statistics.`,
		Args: needArgs(1, 1, "ferry checkpoint [--leave-running] NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			rep, err := c.Checkpoint(cmd.Context(), args[0], opts, progressPrinter("checkpoint "+args[0]))
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, rep)
			}
			printCheckpointReport(rep)
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.LeaveRunning, "leave-running", false, "keep the container running after the checkpoint")
	return cmd
}

func printCheckpointReport(r *node.CheckpointReport) {
	state := "checkpointed (stopped until ferry restore)"
	if r.LeaveRunning {
		state = "still running"
	}
	fmt.Printf("checkpoint %s of %s on %s: %s, %d files; %s\n", r.ID, r.Container, r.Node, humanBytes(r.Size), r.Files, state)
	fmt.Printf("  took %s, container frozen %s; writable layer %s\n", ms(r.Took), ms(r.Frozen), humanBytes(r.DiffBytes))
	if s := r.CRIU; s != nil {
		fmt.Printf("  CRIU: freezing %s, frozen %s, memdump %s, memwrite %s; pages scanned %d, written %d\n",
			ms(s.FreezingTime), ms(s.FrozenTime), ms(s.MemdumpTime), ms(s.MemwriteTime), s.PagesScanned, s.PagesWritten)
	}
}
