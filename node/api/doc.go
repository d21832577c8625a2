// Package api is the node agent's API: HTTP with JSON bodies, served on the agent's root-only unix socket
// (and, later, through SSH channels), and the client the command line uses.
//
// Long operations (import, checkpoint, restore) and streams (logs, exec) answer with newline-delimited JSON
// events: zero or more "progress" (or "log", "stdout", "stderr") events, then exactly one "result" or "error".
// Errors carry a code that maps back to the node package's sentinel errors, so errors.Is works across the
// socket.
//
// Usage:
//
//	srv := api.NewServer(agent, logger)
//	go srv.Serve(ctx, listener)
//
//	c := api.NewUnixClient("/var/lib/ferry/ferry.sock")
//	list, err := c.Containers(ctx)
package api
