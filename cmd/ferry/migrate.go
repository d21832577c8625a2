package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newMigrateCmd() *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "migrate NAME [SRC] DST [--mode auto|stop-copy|pre-copy|post-copy]",
		Short: "Move a running container to another node, with its memory, files and log",
		Long: `Move a running container to node DST while it runs: it is frozen on its node, CRIU dumps it, its memory
pages flow to DST through an SSH tunnel while CRIU dumps, the rest follows as a checksummed stream, and DST
restores it. Its placement changes only once DST runs it; if anything fails before that, it is thawed where
it was and goes on. SRC, if given, must be where it runs. Prints progress and a report (downtime, total
time, bytes); -o json prints the report as JSON.`,
		Args: needArgs(2, 3, "ferry migrate NAME [SRC] DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.MigrateRequest{Container: args[0], Target: args[len(args)-1], Mode: mode}
			if len(args) == 3 {
				req.Source = args[1]
			}
			c, err := client()
			if err != nil {
				return err
			}
			rep, err := c.Migrate(cmd.Context(), req, progressPrinter("migrate "+req.Container))
			if err != nil {
				return err
			}
			if jsonOut() {
				if err := printJSON(os.Stdout, rep); err != nil {
					return err
				}
			} else {
				printMigrationReport(rep)
			}
			if rep.Outcome != migrate.StateCommitted {
				return errors.New(rep.Error)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "auto", "auto, stop-copy, pre-copy or post-copy (auto picks the best both nodes allow)")
	return cmd
}

func printMigrationReport(r *migrate.Report) {
	j := r.Job
	if r.Outcome != migrate.StateCommitted {
		fmt.Printf("migration of %s from %s to %s %s after %s (failed step: %s)\n", j.Container, j.Source, j.Target, r.Outcome, ms(r.Total), r.FailedStep)
		return
	}
	fmt.Printf("migrated %s from %s to %s (%s)\n", j.Container, j.Source, j.Target, j.Mode)
	fmt.Printf("  downtime %s, total %s\n", ms(r.Downtime), ms(r.Total))
	if p := r.Phases; p != nil {
		fmt.Printf("  downtime by phase: dump %s, send the rest %s, handover %s, restore %s\n", ms(p.Dump), ms(p.Send), ms(p.Handover), ms(p.Restore))
	}
	fmt.Printf("  bytes: %s raw, %s sent\n", humanBytes(r.BytesRaw), humanBytes(r.BytesSent))
	if d := r.Dump; d != nil && d.CRIU != nil {
		fmt.Printf("  CRIU dump: frozen %s, memdump %s, memwrite %s, pages written %d\n", ms(d.CRIU.FrozenTime), ms(d.CRIU.MemdumpTime), ms(d.CRIU.MemwriteTime), d.CRIU.PagesWritten)
	}
	if s := r.Restore; s != nil && s.CRIU != nil {
		fmt.Printf("  CRIU restore: forking %s, restore %s, pages restored %d\n", ms(s.CRIU.ForkingTime), ms(s.CRIU.RestoreTime), s.CRIU.PagesRestored)
	}
}
