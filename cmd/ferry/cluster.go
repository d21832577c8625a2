package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster-wide commands (token)", Args: needArgs(0, 0, "ferry cluster token")}
	cmd.AddCommand(&cobra.Command{
		Use:   "token",
		Short: "Print a token with which another agent joins the cluster (ferry agent --join ADDR --token TOKEN)",
		Args:  needArgs(0, 0, "ferry cluster token"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			tok, err := c.JoinToken(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, map[string]string{"token": tok})
			}
			fmt.Println(tok)
			return nil
		},
	})
	return cmd
}
