package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect nodes (info)", Args: needArgs(0, 0, "ferry node info")}
	cmd.AddCommand(&cobra.Command{
		Use:   "info",
		Short: "Show the node: memory, containers, and what its CRIU can do",
		Args:  needArgs(0, 1, "ferry node info [NODE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			in, err := c.Info(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 1 && args[0] != in.Name {
				return fmt.Errorf("this agent is node %s; node %s is not known to it", in.Name, args[0])
			}
			if jsonOut() {
				return printJSON(os.Stdout, in)
			}
			fmt.Printf("node:        %s\n", in.Name)
			fmt.Printf("data dir:    %s\n", in.DataDir)
			fmt.Printf("containers:  %d (%d running)\n", in.Containers, in.Running)
			fmt.Printf("memory:      %s available of %s\n", humanBytes(in.MemoryFree), humanBytes(in.MemoryTotal))
			if in.CRIU == nil {
				fmt.Printf("criu:        unusable: %s\n", in.CRIUError)
				return nil
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
			return nil
		},
	})
	return cmd
}

func printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}
