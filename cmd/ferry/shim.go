package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ferryhq/ferry/node/runtime"
	"github.com/spf13/cobra"
)

// newShimCmd is the per-container shim the agent starts; it is not for people.
func newShimCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "shim",
		Short:  "Per-container process that owns a container's stdio (started by the agent)",
		Hidden: true,
		Args:   needArgs(0, 0, "ferry shim (started by the agent)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Getenv(runtime.ShimParkedEnv) == "1" {
				cfg, ok, err := runtime.ReadParkedConfig()
				if err != nil || !ok {
					return err // no configuration: the container it was parked for is not coming
				}
				return runtime.RunShim(cfg)
			}
			var cfg runtime.ShimConfig
			if err := json.Unmarshal([]byte(os.Getenv(runtime.ShimEnv)), &cfg); err != nil {
				return fmt.Errorf("the shim is started by the agent, with its configuration in %s: %w", runtime.ShimEnv, err)
			}
			return runtime.RunShim(cfg)
		},
	}
}
