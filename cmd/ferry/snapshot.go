package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot create|ls|load|rm",
		Short: "Take, list, load and remove snapshots of containers",
		Long: `A snapshot is a consistent copy of a running container: its memory (dumped by CRIU), its writable layer's
changes and its recorded configuration, with sha256 sums of every file. It is catalogued in the cluster and
kept on the container's node plus, by default, one other node, so that losing a node loses no snapshot.
Loading one takes the container back to that moment; what came after is gone. Only controllers may create,
load or remove snapshots.`,
	}
	cmd.AddCommand(newSnapshotCreateCmd(), newSnapshotLsCmd(), newSnapshotLoadCmd(), newSnapshotRmCmd())
	return cmd
}

func newSnapshotCreateCmd() *cobra.Command {
	var (
		stop   bool
		copies int
	)
	cmd := &cobra.Command{
		Use:   "create NAME [--stop] [--copies N]",
		Short: "Snapshot a running container",
		Long: `Snapshot running container NAME. It is frozen only while CRIU dumps it and its writable layer is captured,
then goes on; with --stop it is left stopped. The snapshot is copied to --copies other nodes (default 1),
each copy checked against its sums on arrival. Prints progress and a report; -o json prints it as JSON.`,
		Args: needArgs(1, 1, "ferry snapshot create NAME [--stop] [--copies N]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if copies < 0 {
				return usagef("--copies %d: use 0 or more", copies)
			}
			c, err := client()
			if err != nil {
				return err
			}
			res, err := c.CreateSnapshot(cmd.Context(), api.SnapshotRequest{Container: args[0], Stop: stop, Copies: &copies}, progressPrinter("snapshot "+args[0]))
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, res)
			}
			printSnapshotResult(res)
			return nil
		},
	}
	cmd.Flags().BoolVar(&stop, "stop", false, "leave the container stopped after the snapshot")
	cmd.Flags().IntVar(&copies, "copies", 1, "how many other nodes keep a copy")
	return cmd
}

func printSnapshotResult(res *api.SnapshotResult) {
	s, r := res.Snapshot, res.Report
	kind := "snapshot"
	if s.Template != "" {
		kind = "template " + s.Template + ": snapshot"
	}
	fmt.Printf("%s %s of %s on %s: %s, %d files\n", kind, s.ID, s.Container, s.Node, humanBytes(s.Size), r.Files)
	state := "still running"
	if r.Stopped {
		state = "stopped"
	}
	fmt.Printf("  took %s, container frozen %s (%s); writable layer %s\n", ms(r.Took), ms(r.Frozen), state, humanBytes(r.DiffBytes))
	copies := "none"
	if len(s.Copies) > 0 {
		copies = strings.Join(s.Copies, ", ")
	}
	fmt.Printf("  copies: %s (%s)\n", copies, ms(res.CopyTook))
	for _, w := range res.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
}

func newSnapshotLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List the cluster's snapshots, or those of container NAME",
		Args:  needArgs(0, 1, "ferry snapshot ls [NAME]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			list, err := c.Snapshots(cmd.Context(), name)
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, list)
			}
			var rows [][]string
			for _, s := range list {
				copies, bad := "-", ""
				if len(s.Copies) > 0 {
					copies = strings.Join(s.Copies, ",")
				}
				if s.Bad {
					bad = "bad: " + s.Reason
				}
				tmpl := s.Template
				if tmpl == "" && s.Auto {
					tmpl = "(periodic)"
				}
				rows = append(rows, []string{s.ID, s.Container, humanBytes(s.Size), ago(s.Created), s.Node, copies, tmpl, bad})
			}
			return table(os.Stdout, []string{"ID", "CONTAINER", "SIZE", "CREATED", "NODE", "COPIES", "TEMPLATE", "BAD"}, rows)
		},
	}
}

func newSnapshotLoadCmd() *cobra.Command {
	var on string
	cmd := &cobra.Command{
		Use:   "load NAME ID [--node NODE]",
		Short: "Take container NAME back to snapshot ID",
		Long: `Take container NAME back to the moment of snapshot ID: its memory, its files and its recorded configuration.
What it did after the snapshot is gone. The snapshot's files are checked against their sums first; a snapshot
that fails is refused (and marked bad) and the container is not touched. When the container's node is gone,
it is loaded on a node that holds a copy, and the container moves there. --node loads it on that node (the
snapshot is sent there if needed, and the container, stopped where it was, moves there).`,
		Args: needArgs(2, 2, "ferry snapshot load NAME ID [--node NODE]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			res, err := c.LoadSnapshot(cmd.Context(), args[1], api.LoadSnapshotRequest{Container: args[0], Node: on}, progressPrinter("load "+args[0]))
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, res)
			}
			fmt.Printf("%s is back at snapshot %s on %s (took %s)\n", res.Container, res.Snapshot, res.Node, ms(res.Took))
			if res.MovedFrom != "" {
				fmt.Printf("  moved from %s\n", res.MovedFrom)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&on, "node", "", "load it on this node (the container moves there)")
	return cmd
}

func newSnapshotRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME ID",
		Short: "Remove snapshot ID of container NAME, with its copies",
		Args:  needArgs(2, 2, "ferry snapshot rm NAME ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			res, err := c.RemoveSnapshot(cmd.Context(), args[1], args[0])
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, res)
			}
			fmt.Println(res.Removed)
			if len(res.LeftOn) > 0 {
				fmt.Fprintf(os.Stderr, "warning: the copies on %s could not be removed now (not reachable); each node removes its copy once it is back\n",
					strings.Join(res.LeftOn, ", "))
			}
			return nil
		},
	}
}
