package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func newStopCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a container (SIGTERM, then SIGKILL after --time)",
		Args:  needArgs(1, 1, "ferry stop NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ct, err := c.Stop(cmd.Context(), args[0], timeout)
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, ct)
			}
			fmt.Println(ct.Config.Name)
			return nil
		},
	}
	cmd.Flags().DurationVarP(&timeout, "time", "t", 10*time.Second, "how long to wait after SIGTERM before SIGKILL")
	return cmd
}
