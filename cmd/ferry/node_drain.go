package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ferryhq/ferry/node/api"
	"github.com/spf13/cobra"
)

func newNodeDrainCmd() *cobra.Command {
	var (
		req    api.DrainRequest
		status bool
	)
	cmd := &cobra.Command{
		Use:   "drain NODE [--deadline D [--force]] [--max-parallel N] [--detach] | drain --status NODE",
		Short: "Move every container off a node, live, and keep new ones away from it",
		Long: `Drain NODE: it becomes ineligible at once (nothing new is placed on it), then the leader moves each of
its containers by live migration to another node (alive, eligible, out of maintenance, with room for its memory
limit, spreading them out), at most --max-parallel at a time. A migration that fails is tried once more on
another node; a container that cannot move (no room, two failures, --deadline passed) keeps running on NODE,
and one started with --no-migrate is left there; the report says which and why. With --force (which needs
--deadline), a container that has not moved when the deadline passes is snapshotted and then stopped; the
report gives the snapshot's ID, and ferry snapshot load NAME ID brings it back. If that snapshot fails, the
container keeps running and the report says why.

The drain is a job in the cluster's state: it goes on if the leader changes, and --status shows it. --detach
returns once it is recorded. ferry node undrain NODE makes the node eligible again. --status also shows the
failover of a node that died: its containers with periodic snapshots (ferry run --snapshot-every) restored
on other nodes, and what each lost.

Exit status 0 when no container stays on NODE, 1 when some do.`,
		Args: needArgs(1, 1, "ferry node drain NODE [--deadline D [--force]] [--max-parallel N] [--detach]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Node = args[0]
			if req.Force && req.Deadline <= 0 {
				return usagef("--force needs --deadline (e.g. --deadline 10m): it snapshots and stops what has not moved by then")
			}
			if req.MaxParallel < 1 {
				return usagef("--max-parallel %d: use 1 or more", req.MaxParallel)
			}
			if cmd.Flags().Changed("deadline") && req.Deadline <= 0 {
				return usagef("--deadline %s: use a positive duration such as 10m", req.Deadline)
			}
			c, err := client()
			if err != nil {
				return err
			}
			if status {
				rep, err := c.DrainStatus(cmd.Context(), req.Node)
				if err != nil {
					return err
				}
				return printDrain(rep, false)
			}
			rep, err := c.Drain(cmd.Context(), req, drainPrinter())
			if err != nil {
				return err
			}
			return printDrain(rep, req.Detach)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&req.Deadline, "deadline", 0, "start no migration after this long (default: no deadline); what has not moved stays")
	fl.IntVar(&req.MaxParallel, "max-parallel", 1, "migrations at a time")
	fl.BoolVar(&req.Detach, "detach", false, "return once the drain is recorded; follow it with --status")
	fl.BoolVar(&status, "status", false, "show the node's latest drain from the cluster's state")
	fl.BoolVar(&req.Force, "force", false, "with --deadline: snapshot, then stop, what has not moved by the deadline")
	return cmd
}

// drainPrinter shows each container's steps on stderr.
func drainPrinter() func(api.DrainEvent) {
	last := map[string]string{}
	return func(ev api.DrainEvent) {
		who := ev.Container
		if ev.Target != "" {
			who += " -> " + ev.Target
		}
		line := fmt.Sprintf("drain %s: %s: %s", ev.Node, who, ev.Phase)
		if ev.Container == "" {
			line = fmt.Sprintf("drain %s: %s", ev.Node, ev.Phase)
		}
		if ev.Bytes > 0 {
			line += " " + humanBytes(ev.Bytes)
		}
		if ev.Downtime > 0 {
			line += ", downtime " + ms(ev.Downtime)
		}
		if ev.Message != "" {
			line += " (" + ev.Message + ")"
		}
		if last[ev.Container] == line {
			return
		}
		last[ev.Container] = line
		fmt.Fprintf(os.Stderr, "%s [%s]\n", line, ev.Elapsed.Round(time.Millisecond))
	}
}

// printDrain prints a drain's report (or, detached, the recorded job) and returns an error when containers
// stay on the node.
func printDrain(rep *api.DrainReport, detached bool) error {
	if jsonOut() {
		if err := printJSON(os.Stdout, rep); err != nil {
			return err
		}
	} else {
		printDrainTable(rep, detached)
	}
	if rep.State == "failed" {
		return errors.New(rep.Error)
	}
	return nil
}

func printDrainTable(rep *api.DrainReport, detached bool) {
	switch {
	case detached:
		fmt.Printf("drain %s of %s recorded: %d containers; %s is ineligible. Follow it with: ferry node drain --status %s\n",
			rep.ID, rep.Node, len(rep.Items), rep.Node, rep.Node)
		return
	case rep.Reason == "failover" && rep.State != "planned" && rep.State != "running":
		fmt.Printf("failover of %s (the node died) ended after %s: %d restored from snapshots elsewhere, %d stay on it\n", rep.Node, ms(rep.Took), rep.Moved, rep.Stayed)
	case rep.State == "committed":
		fmt.Printf("drained %s in %s: %d containers moved, %d snapshotted and stopped\n", rep.Node, ms(rep.Took), rep.Moved, rep.Stopped)
	case rep.State == "failed":
		fmt.Printf("drain of %s ended after %s: %d moved, %d snapshotted and stopped, %d stay\n", rep.Node, ms(rep.Took), rep.Moved, rep.Stopped, rep.Stayed)
	default:
		fmt.Printf("drain %s of %s is %s (started %s): %d moved so far\n", rep.ID, rep.Node, rep.State, ago(rep.StartedAt), rep.Moved)
	}
	var rows [][]string
	for _, it := range rep.Items {
		to, down := it.Target, "-"
		if it.State != "committed" && it.State != "restored" {
			to = "-"
		}
		if it.Downtime > 0 {
			down = ms(it.Downtime)
		}
		note := it.Error
		if len(it.Tried) > 0 && it.State == "committed" {
			note = "after a failed attempt on " + strings.Join(it.Tried, ", ")
		}
		if it.State == "restored" {
			note = fmt.Sprintf("from snapshot %s; lost %s (the time from that snapshot to the node going down)", it.Snapshot, it.Lost.Round(time.Millisecond))
		}
		rows = append(rows, []string{it.Container, drainState(it.State), to, down, fmt.Sprint(it.Attempts), note})
	}
	_ = table(os.Stdout, []string{"CONTAINER", "OUTCOME", "MOVED TO", "DOWNTIME", "ATTEMPTS", "NOTE"}, rows)
	if rep.Reason != "" && rep.Reason != "drain" && rep.Reason != "failover" {
		fmt.Printf("(drain started by %s)\n", rep.Reason)
	}
}

func drainState(s string) string {
	switch s {
	case "committed":
		return "moved"
	case "failed":
		return "stays"
	case "skipped":
		return "not moved"
	case "snapshotted":
		return "snapshotted, stopped"
	}
	return s
}

func newNodeUndrainCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "undrain NODE",
		Short: "Make a drained node eligible for new containers again (ending its drain if it still runs)",
		Args:  needArgs(1, 1, "ferry node undrain NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ch, err := c.Undrain(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if jsonOut() {
				return printJSON(os.Stdout, ch)
			}
			fmt.Printf("%s is eligible again\n", ch.Node.Name)
			return nil
		},
	}
}
