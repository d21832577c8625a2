// Package criu probes the host's CRIU and reads its statistics, through go-criu.
//
// The node agent calls Probe once at start-up and logs the result; the features decide which migration modes
// the node can take part in (pre-copy needs soft-dirty memory tracking, post-copy and lazy clones need
// userfaultfd, and every container dump needs the network lock tools).
//
// Usage:
//
//	f, err := criu.Probe(ctx, criu.ProbeConfig{})
//	if err != nil { ... }            // CRIU missing or too old: the error names the fix
//	if f.Has(criu.FeatureMemTrack) { ... pre-copy is possible ... }
//
//	st, err := criu.ReadDumpStats(workDir) // after `runc checkpoint --work-path workDir`
package criu
