package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/transfer/sshx"
)

// forwarder sends a follower's raft writes to the leader's agent over SSH (POST /v1/internal/forward).
type forwarder struct{ pool *sshx.Pool }

// Forward implements cluster.Forwarder. The leader's raft address is its SSH address.
func (f *forwarder) Forward(ctx context.Context, leader cluster.Peer, cmd cluster.Command) (cluster.Result, error) {
	b, err := json.Marshal(cmd)
	if err != nil {
		return cluster.Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+leader.RaftAddr+"/v1/internal/forward", bytes.NewReader(b))
	if err != nil {
		return cluster.Result{}, err
	}
	hc := &http.Client{Transport: sshx.HTTPTransport(f.pool, sshx.ChannelAPI)}
	resp, err := hc.Do(req)
	if err != nil {
		return cluster.Result{}, fmt.Errorf("%w: forwarding to the leader %s: %v", cluster.ErrNoLeader, leader.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return cluster.Result{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return cluster.Result{}, fmt.Errorf("forwarding to the leader %s: %s: %s", leader.Name, resp.Status, bytes.TrimSpace(body))
	}
	var fr cluster.ForwardResponse
	if err := json.Unmarshal(body, &fr); err != nil {
		return cluster.Result{}, fmt.Errorf("forwarding to the leader %s: bad answer: %w", leader.Name, err)
	}
	return fr.Result, fr.Err()
}
