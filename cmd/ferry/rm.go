package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [--force] NAME",
		Short: "Remove a container that is not running, with its log and checkpoints",
		Args:  needArgs(1, 1, "ferry rm [--force] NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			if err := c.Remove(cmd.Context(), args[0], force); err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, map[string]string{"removed": args[0]})
			}
			fmt.Println(args[0])
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")
	return cmd
}
