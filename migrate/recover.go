package migrate

import (
	"context"
	"fmt"
)

// Recover finishes a job that a previous leader left unfinished, or that its runner left open (ErrUnsettled);
// the leader calls it for every such job it finds in raft. If the target runs the container, the move
// happened: it is committed and the source's frozen copy removed. Otherwise it is rolled back: the target
// drops what it has, the source thaws.
//
// targetGone says that the target cannot be asked and will not be: it left the cluster, or it has been dead
// for the fencing delay, by which time a target that is only cut off has frozen a copy it may run (its
// self-fence) and removes it when it is back, as the job is then over. The job is then rolled back without
// the target, so that a lost target does not keep the container frozen on its source for good.
func Recover(ctx context.Context, job Job, nodes Nodes, rec Recorder, targetGone bool) (string, error) {
	running, err := nodes.Running(ctx, job.Target, job.Container)
	if err != nil && targetGone {
		if err := nodes.Finish(ctx, job, false); err != nil {
			return "", fmt.Errorf("thawing %s on %s: %w", job.Container, job.Source, err)
		}
		msg := fmt.Sprintf("the target %s is gone; rolled back without it (a copy it made is removed when it is back)", job.Target)
		if err := rec.Record(ctx, job, StateRolledBack, msg); err != nil {
			return "", err
		}
		return StateRolledBack, nil
	}
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
