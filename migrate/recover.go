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
	// Until both succeed the job stays open and is tried again: recorded as over, it would leave the source's
	// copy frozen for good. (A source that had not frozen it yet has nothing to thaw: that is no error.)
	if err := nodes.Abort(ctx, job); err != nil {
		return "", fmt.Errorf("dropping what %s received: %w", job.Target, err)
	}
	if err := nodes.Finish(ctx, job, false); err != nil {
		return "", fmt.Errorf("thawing %s on %s: %w", job.Container, job.Source, err)
	}
	msg := "the leader changed during the migration; rolled back by the new leader"
	if err := rec.Record(ctx, job, StateRolledBack, msg); err != nil {
		return "", err
	}
	return StateRolledBack, nil
}
