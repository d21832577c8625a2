package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/ferryhq/ferry/node"
	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect, drain and remove the cluster's nodes (ls, info, drain, undrain, maintenance, leave)",
		Args: needArgs(0, 0, "ferry node ls|info|drain|undrain|maintenance|leave")}
	cmd.AddCommand(newNodeDrainCmd(), newNodeUndrainCmd(), newNodeMaintenanceCmd(), newNodeLeaveCmd())
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the nodes: address, status, raft role, eligibility, containers, free memory",
		Args:  needArgs(0, 0, "ferry node ls"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			list, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, list)
			}
			var rows [][]string
			for _, n := range list {
				elig := "eligible"
				if !n.Eligible {
					elig = "ineligible"
				}
				if n.Maintenance {
					elig += ",maintenance"
				}
				rows = append(rows, []string{n.Name, n.Addr, n.Status, n.RaftRole, elig, fmt.Sprint(n.Containers), humanBytes(n.FreeMemory)})
			}
			return table(os.Stdout, []string{"NAME", "ADDRESS", "STATUS", "RAFT", "ELIGIBILITY", "CONTAINERS", "FREE MEMORY"}, rows)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "info [NODE]",
		Short: "Show a node (default: the one answering): memory, containers, and what its CRIU can do",
		Args:  needArgs(0, 1, "ferry node info [NODE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			in, err := c.NodeInfo(cmd.Context(), name)
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, in)
			}
			printNodeInfo(in)
			return nil
		},
	})
	return cmd
}

func printNodeInfo(in *node.Info) {
	fmt.Printf("node:        %s\n", in.Name)
	fmt.Printf("data dir:    %s\n", in.DataDir)
	fmt.Printf("containers:  %d (%d running)\n", in.Containers, in.Running)
	fmt.Printf("memory:      %s available of %s\n", humanBytes(in.MemoryFree), humanBytes(in.MemoryTotal))
	if in.CRIU == nil {
		fmt.Printf("criu:        unusable: %s\n", in.CRIUError)
		return
	}
	check := "passes"
	if !in.CRIU.CheckOK {
		check = "FAILS: " + in.CRIU.CheckOutput
	}
	fmt.Printf("criu:        %s at %s; criu check %s\n", in.CRIU.Version, in.CRIU.Path, check)
	var have, lack []string
	for name, ok := range in.CRIU.Features {
		if ok {
			have = append(have, name)
		} else {
			lack = append(lack, name)
		}
	}
	fmt.Printf("features:    %s\n", strings.Join(sorted(have), " "))
	if len(lack) > 0 {
		fmt.Printf("missing:     %s\n", strings.Join(sorted(lack), " "))
	}
}
