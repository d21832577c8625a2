// Package agent is the whole ferry agent process of one host: the node (runc, CRIU, images), its place in the
// cluster (raft state and memberlist membership), and its one SSH port, which carries the operator API,
// agent-to-agent calls, raft and (later) checkpoint streams and tunnels. The command line's `ferry agent` is
// a thin wrapper around Start.
//
// The first agent (no --join) makes the cluster: a certificate authority, a cluster secret (which also keys
// the gossip encryption), and a one-node raft cluster. Other agents join with a token from `ferry cluster
// token`: they prove the token over SSH, get their host and user certificates signed by the cluster's CA,
// and from then on agents accept only each other's certificates. The leader adds joined members to raft
// (as voters up to five, non-voters beyond).
//
// Snapshots (snapshots.go, clone.go, snapshot_periodic.go) are taken on the container's node, catalogued in
// raft and copied to other nodes as "snapshot" streams on the agents' SSH channels; a receiver keeps a copy
// only when every file matches the snapshot's manifest. LoadSnapshotOn is the entry point for restoring a
// container from a snapshot copy on a chosen node; the failover of a dead node (failover.go) builds on it.
//
// The leader drives the long jobs: migrations (migrate_cmd.go) and drains (drain.go): a drain moves every
// container of a node by live migration, resumes under a new leader, and is what maintenance mode and an
// agent's evacuation on shutdown (Config.EvacuateOnShutdown, Shutdown) start. With --force, what has not moved
// by the deadline is snapshotted and stopped. A failover (failover.go) is a drain job of a dead node: after
// Config.FailoverDelay, its containers with periodic snapshots are restored elsewhere from their latest
// snapshots (the node's eligibility is left alone); fence.go keeps the node, when it returns, from running
// its stale copies.
//
// Usage:
//
//	cfg := agent.DefaultConfig()
//	cfg.Name, cfg.DataDir, cfg.Bind = "vg-1", "/var/lib/ferry", "10.77.0.11:7400"
//	a, err := agent.Start(ctx, cfg)
//	...
//	<-ctx.Done(); a.Shutdown() // evacuates first when cfg.EvacuateOnShutdown
package agent
