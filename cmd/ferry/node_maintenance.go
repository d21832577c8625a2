package main

import (
	"fmt"
	"os"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newNodeMaintenanceCmd() *cobra.Command {
	var req api.MaintenanceRequest
	cmd := &cobra.Command{
		Use:   "maintenance on|off [NODE] [--deadline D] [--max-parallel N]",
		Short: "Put a node in maintenance (drains it) or take it out (eligible again)",
		Long: `ferry node maintenance on NODE marks NODE in maintenance and drains it: its containers move live to
other nodes (as ferry node drain, in the background: follow it with ferry node drain --status NODE).
ferry node maintenance off NODE ends maintenance and makes the node eligible again. Without NODE, the node
of the agent the command line talks to.`,
		Args: needArgs(1, 2, "ferry node maintenance on|off [NODE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "on":
				req.On = true
			case "off":
			default:
				return usagef("ferry node maintenance %s: say on or off", args[0])
			}
			if req.MaxParallel < 1 {
				return usagef("--max-parallel %d: use 1 or more", req.MaxParallel)
			}
			c, err := client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			} else {
				in, err := c.NodeInfo(cmd.Context(), "")
				if err != nil {
					return err
				}
				name = in.Name
			}
			ch, err := c.Maintenance(cmd.Context(), name, req)
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, ch)
			}
			if !req.On {
				fmt.Printf("%s is out of maintenance and eligible again\n", name)
				return nil
			}
			fmt.Printf("%s is in maintenance", name)
			if ch.Drain != nil {
				fmt.Printf("; drain %s moves its %d containers (ferry node drain --status %s)", ch.Drain.ID, len(ch.Drain.Items), name)
			}
			fmt.Println()
			return nil
		},
	}
	cmd.Flags().DurationVar(&req.Deadline, "deadline", 0, "with on: the drain's deadline (default: none)")
	cmd.Flags().IntVar(&req.MaxParallel, "max-parallel", 1, "with on: migrations at a time")
	return cmd
}
