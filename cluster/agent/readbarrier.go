package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/node/api"
)

// readBarrierWait bounds how long an operator's request on a follower waits to catch up with the leader
// before it is served from what the follower has (reads work without a leader, possibly a little behind).
const readBarrierWait = 2 * time.Second

// leaderIndex is the answer of GET /v1/internal/index: the raft index the leader has applied.
type leaderIndex struct {
	Index uint64 `json:"index"`
}

// servedIndex answers another agent with the index this agent has applied, when it leads.
func (rt *Router) servedIndex(w http.ResponseWriter, r *http.Request) {
	if callerOf(r).Role != "agent" {
		api.WriteError(w, fmt.Errorf("%w: only agents ask for the leader's index", api.ErrForbidden))
		return
	}
	if !rt.store.IsLeader() {
		api.WriteError(w, fmt.Errorf("%w: %s is not the leader", api.ErrNodeUnreachable, rt.self))
		return
	}
	api.WriteJSON(w, 200, leaderIndex{Index: rt.store.AppliedIndex()})
}

// catchUp makes an operator's request on a follower see every write the leader had applied when it came in
// (a raft read index): `ferry node drain` answered by the leader and then `ferry node drain --status` asked
// of another agent shows the drain's end, not an older state. It asks the leader for its applied index and
// waits until this node applied as much. Without a leader, or past readBarrierWait, the request is served
// from this node's state as it is.
func (rt *Router) catchUp(ctx context.Context) {
	if rt.store.IsLeader() {
		return
	}
	leader, _ := rt.store.Leader()
	if leader == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, readBarrierWait)
	defer cancel()
	idx, err := rt.fetchLeaderIndex(ctx, leader)
	if err != nil {
		rt.log.Debug("serving a read without the leader's index", "leader", leader, "err", err)
		return
	}
	if err := rt.store.WaitIndex(ctx, idx); err != nil {
		rt.log.Warn("serving a read that may lag the leader", "leader", leader, "leader_index", idx,
			"applied", rt.store.AppliedIndex(), "err", err)
	}
}

func (rt *Router) fetchLeaderIndex(ctx context.Context, leader string) (uint64, error) {
	addr, err := rt.nodeAddr(leader)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/internal/index", nil)
	if err != nil {
		return 0, err
	}
	resp, err := rt.peers.Transport().RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("leader %s answered %s", leader, resp.Status)
	}
	var li leaderIndex
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&li); err != nil {
		return 0, fmt.Errorf("leader %s: bad index answer: %w", leader, err)
	}
	return li.Index, nil
}
