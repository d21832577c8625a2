package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

// evacuateMargin is kept from the shutdown bound for the last migrations to finish after the drain's
// deadline has stopped new ones from starting.
const evacuateMargin = 30 * time.Second

// Shutdown stops the agent. With EvacuateOnShutdown it first drains its own node (the leader moves its
// containers away) and waits for that drain to end, for at most ShutdownTimeout; what has not moved by then
// keeps running here, as after any agent stop.
func (a *Agent) Shutdown() {
	if a.cfg.EvacuateOnShutdown {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		rep, err := a.Evacuate(ctx)
		cancel()
		switch {
		case err != nil:
			a.log.Error("evacuation on shutdown did not finish; the containers not moved keep running here", "err", err)
		case rep.State == string(cluster.JobCommitted):
			a.log.Info("evacuated: every container moved away; the node stays ineligible until ferry node undrain "+a.cfg.Name,
				"moved", rep.Moved, "took", rep.Took.Round(time.Millisecond))
		default:
			a.log.Warn("evacuation ended with containers left here", "moved", rep.Moved, "stayed", rep.Stayed, "why", rep.Error)
		}
	}
	a.Close()
}

// Evacuate asks the leader to drain this node and waits until the drain ends or ctx is done (its deadline
// bounds the drain's). It returns the drain's report.
func (a *Agent) Evacuate(ctx context.Context) (*api.DrainReport, error) {
	req := drainRequest{DrainRequest: api.DrainRequest{Node: a.cfg.Name, MaxParallel: a.cfg.EvacuateParallel, Detach: true}, Reason: reasonShutdown}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = max(time.Until(dl)-evacuateMargin, time.Until(dl)/2)
	}
	if n := len(a.store.State().ContainersOn(a.cfg.Name)); n == 0 {
		a.log.Info("evacuation on shutdown: no container on this node")
	} else {
		a.log.Info("evacuation on shutdown: asking the leader to drain this node", "containers", n, "deadline", req.Deadline.Round(time.Second))
	}
	var rep api.DrainReport
	var id string
	for {
		leader, err := a.store.WaitLeader(ctx)
		if err != nil {
			return nil, fmt.Errorf("no leader to drain this node: %w", err)
		}
		var raw json.RawMessage
		err = a.callAgent(ctx, leader, "POST", "/v1/drains", req, &raw)
		if err == nil {
			if err = resultOf(raw, &rep); err == nil {
				id = rep.ID
				break
			}
		}
		if errors.Is(err, node.ErrState) {
			if d := a.store.State().ActiveDrain(a.cfg.Name); d != nil {
				id = d.ID // already draining (maintenance, an operator): wait for that one
				break
			}
		}
		a.log.Warn("asking the leader to drain this node failed; retrying", "leader", leader, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("asking the leader to drain this node: %w", err)
		case <-time.After(time.Second):
		}
	}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		if j, ok := a.store.State().Drains[id]; ok && j.State.Final() {
			return drainReport(j), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the drain %s of this node did not end within the shutdown bound: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}
