package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func newNodeLeaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "leave [NODE]",
		Short: "Take a node that holds no container out of the cluster (default: the node answering); its agent stops",
		Long: `ferry node leave NODE takes NODE out of the cluster: its agent leaves gossip and stops, and the node
is removed from raft's servers and from the cluster's state. The node must hold no container (move them with
ferry node drain NODE first) and no snapshot's only copy. A dead node is only forgotten. Starting the node's
agent again later joins it again.`,
		Args: needArgs(0, 1, "ferry node leave [NODE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			} else {
				in, err := c.NodeInfo(cmd.Context(), "")
				if err != nil {
					return err
				}
				name = in.Name
			}
			n, err := c.Leave(cmd.Context(), name)
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, n)
			}
			fmt.Printf("%s left the cluster; its agent stopped (starting it again joins it again)\n", n.Name)
			return nil
		},
	}
}
