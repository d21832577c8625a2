package migrate

import (
	"context"
	"fmt"
)

// Gone says which of a job's nodes cannot be asked and will not be: a node that left the cluster, or has
// been dead for the fencing delay. By then a node that is only cut off has frozen what it may have to give up
// (its self-fence), and when it is back it settles its copy by the cluster's state: the fence removes a copy
// placed elsewhere, the source thaws a copy whose migration is over and that is still placed there.
type Gone struct {
	Source bool
	Target bool
}

// Recover finishes a job that a previous leader left unfinished, or that its runner left open (ErrUnsettled);
// the leader calls it for every such job it finds in raft. If the target runs the container, the move
// happened: it is committed and the source's frozen copy removed. Otherwise it is rolled back: the target
// drops what it has, the source thaws.
//
// A gone node is not waited for. Without the target the job is rolled back (a copy it made is removed when
// it is back), so that a lost target does not keep the container frozen on its source for good. Without the
// source, a target that runs the container takes it (committed); otherwise the job is rolled back without
// thawing anything, so that the container is what it would be without the migration: on a dead node, for its
// failover to restore elsewhere, which waits for the migration to be over.
func Recover(ctx context.Context, job Job, nodes Nodes, rec Recorder, gone Gone) (string, error) {
	running, err := nodes.Running(ctx, job.Target, job.Container)
	switch {
	case err != nil && gone.Target:
		if !gone.Source {
			if err := nodes.Finish(ctx, job, false); err != nil {
				return "", fmt.Errorf("thawing %s on %s: %w", job.Container, job.Source, err)
			}
		}
		msg := fmt.Sprintf("the target %s is gone; rolled back without it (a copy it made is removed when it is back)", job.Target)
		if gone.Source {
			msg = fmt.Sprintf("the source %s and the target %s are gone; rolled back without them", job.Source, job.Target)
		}
		return rolledBack(ctx, job, rec, msg)
	case err != nil:
		return "", fmt.Errorf("asking %s whether it runs %s: %w", job.Target, job.Container, err)
	case running:
		if err := rec.Record(ctx, job, StateCommitted, ""); err != nil {
			return "", err
		}
		if err := nodes.Finish(ctx, job, true); err != nil {
			return StateCommitted, fmt.Errorf("committed, but the source %s could not remove its frozen copy (it does when it is back): %w", job.Source, err)
		}
		return StateCommitted, nil
	}
	// Until both succeed the job stays open and is tried again: recorded as over, it would leave the source's
	// copy frozen for good. (A source that had not frozen it yet has nothing to thaw: that is no error.)
	if err := nodes.Abort(ctx, job); err != nil {
		return "", fmt.Errorf("dropping what %s received: %w", job.Target, err)
	}
	if gone.Source {
		return rolledBack(ctx, job, rec, fmt.Sprintf("the source %s is gone and %s had not restored the container; rolled back without the source (it thaws its copy, or removes it if the container was restored elsewhere, when it is back)", job.Source, job.Target))
	}
	if err := nodes.Finish(ctx, job, false); err != nil {
		return "", fmt.Errorf("thawing %s on %s: %w", job.Container, job.Source, err)
	}
	return rolledBack(ctx, job, rec, "the leader changed during the migration; rolled back by the new leader")
}

func rolledBack(ctx context.Context, job Job, rec Recorder, msg string) (string, error) {
	if err := rec.Record(ctx, job, StateRolledBack, msg); err != nil {
		return "", err
	}
	return StateRolledBack, nil
}
