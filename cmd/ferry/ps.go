package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/ferryhq/ferry/node"
	"github.com/spf13/cobra"
)

func newPsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ps",
		Short: "List the containers of the whole cluster, with their nodes",
		Args:  needArgs(0, 0, "ferry ps"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			list, err := c.ClusterContainers(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, list)
			}
			var rows [][]string
			for _, ct := range list {
				rows = append(rows, []string{ct.Config.Name, ct.Node, ct.Config.Image, status(ct.Container), pidOf(ct.Container), ago(ct.CreatedAt), strings.Join(ct.Config.Args, " ")})
			}
			if err := table(os.Stdout, []string{"NAME", "NODE", "IMAGE", "STATUS", "PID", "CREATED", "COMMAND"}, rows); err != nil {
				return err
			}
			for _, ct := range list {
				if ct.Note != "" {
					fmt.Fprintf(os.Stderr, "note: %s: %s\n", ct.Config.Name, ct.Note)
				}
			}
			return nil
		},
	}
}

func status(c node.Container) string {
	s := c.State
	switch {
	case c.State == node.StateExited && c.ExitCode != nil:
		s = fmt.Sprintf("exited (%d)", *c.ExitCode)
	case c.State == node.StateRunning:
		s = "running " + strings.TrimSuffix(ago(c.StartedAt), " ago")
	}
	return s
}

func pidOf(c node.Container) string {
	if c.Pid == 0 {
		return "-"
	}
	return fmt.Sprint(c.Pid)
}
