package main

import (
	"os"

	"github.com/spf13/cobra"
)

func newExecCmd() *cobra.Command {
	var env []string
	cmd := &cobra.Command{
		Use:   "exec NAME [--env K=V]... -- CMD ARGS...",
		Short: "Run a command in a running container",
		Long:  "Run a command in a running container; its output is printed and its exit status becomes ferry's.",
		Args:  needArgs(2, -1, "ferry exec NAME -- CMD ARGS..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			code, err := c.Exec(cmd.Context(), args[0], args[1:], env, os.Stdout, os.Stderr)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE for the command (repeatable)")
	return cmd
}
