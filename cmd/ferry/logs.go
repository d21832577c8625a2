package main

import (
	"fmt"
	"os"
	"time"

	"github.com/ferryhq/ferry/node/runtime"
	"github.com/spf13/cobra"
)

func newLogsCmd() *cobra.Command {
	var follow, timestamps bool
	cmd := &cobra.Command{
		Use:   "logs [-f] NAME",
		Short: "Print a container's log",
		Long: `Print a container's log (its stdout on stdout, its stderr on stderr). With -f, keep printing while the
container runs, including across a checkpoint and restore.`,
		Args: needArgs(1, 1, "ferry logs [-f] NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			return c.Logs(cmd.Context(), args[0], follow, func(r runtime.LogRecord) error {
				if jsonOut() {
					return printJSONLine(r)
				}
				out := os.Stdout
				if r.Stream == runtime.Stderr {
					out = os.Stderr
				}
				nl := "\n"
				if r.Partial {
					nl = ""
				}
				if timestamps {
					_, err := fmt.Fprintf(out, "%s %s%s", r.Time.Format(time.RFC3339Nano), r.Text, nl)
					return err
				}
				_, err := fmt.Fprint(out, r.Text+nl)
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the log")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show each line's time")
	return cmd
}
