package migrate

import (
	"context"
	"fmt"
)

// Recover finishes a job that a previous leader left unfinished (the new leader calls it for every such job
// it finds in raft). If the target runs the container, the move happened: it is committed and the source's
// frozen copy removed. Otherwise it is rolled back: the target drops what it has, the source thaws.
func Recover(ctx context.Context, job Job, nodes Nodes, rec Recorder) (string, error) {
	running, err := nodes.Running(ctx, job.Target, job.Container)
	if err != nil {
		return "", fmt.Errorf("asking %s whether it runs %s: %w", job.Target, job.Container, err)
	}
	if running {
		if err := rec.Record(ctx, job, StateCommitted, ""); err != nil {
			return "", err
		}
		if err := nodes.Finish(ctx, job, true); err != nil {
			return StateCommitted, fmt.Errorf("committed, but the source %s could not remove its frozen copy: %w", job.Source, err)
		}
		return StateCommitted, nil
	}
	_ = nodes.Abort(ctx, job)
	_ = nodes.Finish(ctx, job, false) // the source may not have frozen it yet: then there is nothing to thaw
	msg := "the leader changed during the migration; rolled back by the new leader"
	if err := rec.Record(ctx, job, StateRolledBack, msg); err != nil {
		return "", err
	}
	return StateRolledBack, nil
}
