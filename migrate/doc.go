// Package migrate moves one running container from a source node to a target node: a state machine the
// cluster's leader drives, with the nodes reached through the Nodes interface it declares (the agent
// implements it over SSH; tests give fakes) and every state change recorded through Recorder (raft).
//
// Stop-copy, the mode every node can do:
//
//	planned   → the image reaches the target if it lacks it; the target prepares (a CRIU page server on its
//	            loopback, reached only through an SSH tunnel)
//	dumping   → the source freezes the container and CRIU dumps it; the memory pages flow through the tunnel
//	            to the target while CRIU dumps (dump and transfer overlap); the rest (small images, the
//	            writable layer, configuration, log) follows as a checksummed stream
//	restoring → the target checks the pages' end-to-end hash and restores the container
//	committed → the placement flips to the target in raft, then the source removes its frozen copy
//
// Anything that fails before the target runs the container rolls back: the target drops what it got and the
// source thaws the frozen container, which goes on where it was; the job ends rolled-back with the reason.
// The container is never running in two places: the source copy stays frozen until raft says the target has it.
//
// Usage:
//
//	rep, err := migrate.Run(ctx, job, nodes, recorder, migrate.Options{Progress: fn})
package migrate
