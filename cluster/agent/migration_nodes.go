package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

// callAgent makes an agent-to-agent API call to node's agent (or to this agent's own router) and decodes the
// JSON answer into out.
func (a *Agent) callAgent(ctx context.Context, nodeName, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	addr := a.addr
	if nodeName != a.cfg.Name {
		var err error
		if addr, err = a.router.nodeAddr(nodeName); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return err
	}
	var resp *http.Response
	if nodeName == a.cfg.Name {
		rec := &responseRecorder{header: http.Header{}, status: 200}
		a.router.ServeHTTP(rec, req.WithContext(WithCaller(ctx, Caller{Role: "agent", Name: a.cfg.Name})))
		return decodeRecorded(rec, out)
	}
	resp, err = (&http.Client{Transport: a.Transport()}).Do(req)
	if err != nil {
		return fmt.Errorf("%w: node %s (%s): %v", api.ErrNodeUnreachable, nodeName, addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%w: node %s: %v", api.ErrNodeUnreachable, nodeName, err)
	}
	rec := &responseRecorder{status: resp.StatusCode}
	rec.body.Write(b)
	return decodeRecorded(rec, out)
}

// migrationNodes implements migrate.Nodes with calls to the source's and target's agents.
type migrationNodes struct{ a *Agent }

func (m migrationNodes) base(j migrate.Job) string { return "/v1/internal/migrations/" + j.ID }

func (m migrationNodes) EnsureImage(ctx context.Context, j migrate.Job) error {
	img, ok := m.a.store.State().Images[j.Image]
	if ok && slices.Contains(img.Nodes, j.Target) {
		return nil
	}
	from := j.Source
	if ok && !slices.Contains(img.Nodes, from) && len(img.Nodes) > 0 {
		from = img.Nodes[0]
	}
	if err := m.a.callAgent(ctx, from, "POST", "/v1/internal/images/"+j.Image+"/push", pushRequest{Target: j.Target}, nil); err != nil {
		return err
	}
	nodes := []string{j.Target}
	if ok {
		nodes = append(nodes, img.Nodes...)
	}
	var layers []string
	var id string
	if ok {
		layers, id = img.Layers, img.ID
	}
	_, err := m.a.store.Apply(ctx, &cluster.PutImage{Image: cluster.Image{Name: j.Image, ID: id, Layers: layers, Nodes: uniq(nodes)}})
	return err
}

func (m migrationNodes) Prepare(ctx context.Context, j migrate.Job) error {
	return m.a.callAgent(ctx, j.Target, "POST", m.base(j)+"/prepare", j, nil)
}

func (m migrationNodes) Dump(ctx context.Context, j migrate.Job, _ func(migrate.Progress)) (*migrate.DumpResult, error) {
	var res migrate.DumpResult
	return &res, m.a.callAgent(ctx, j.Source, "POST", m.base(j)+"/dump", j, &res)
}

func (m migrationNodes) Restore(ctx context.Context, j migrate.Job, d *migrate.DumpResult) (*migrate.RestoreResult, error) {
	var res migrate.RestoreResult
	return &res, m.a.callAgent(ctx, j.Target, "POST", m.base(j)+"/restore", restoreRequest{Job: j, Dump: *d}, &res)
}

func (m migrationNodes) Finish(ctx context.Context, j migrate.Job, commit bool) error {
	return m.a.callAgent(ctx, j.Source, "POST", m.base(j)+"/finish", finishRequest{Job: j, Commit: commit}, nil)
}

func (m migrationNodes) Abort(ctx context.Context, j migrate.Job) error {
	return m.a.callAgent(ctx, j.Target, "POST", m.base(j)+"/abort", j, nil)
}

func (m migrationNodes) Running(ctx context.Context, nodeName, container string) (bool, error) {
	var c node.Container
	err := m.a.router.call(ctx, nodeName, "GET", "/v1/containers/"+container, nil, &c)
	if errors.Is(err, node.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if c.State == node.StateRestoring {
		// Not yet, but maybe in a moment: a roll-back now would thaw the source beside it.
		return false, fmt.Errorf("%w: %s is still restoring %s; ask again once it is done", node.ErrState, nodeName, container)
	}
	return c.State == node.StateRunning, nil
}

// raftRecorder records migration states in raft.
type raftRecorder struct{ s *cluster.Store }

func (r raftRecorder) Record(ctx context.Context, j migrate.Job, state, msg string) error {
	_, err := r.s.Apply(ctx, &cluster.UpdateMigration{ID: j.ID, State: cluster.JobState(state), Error: msg})
	if err != nil && !cluster.Rejected(err) {
		return fmt.Errorf("%w: %w", migrate.ErrUncertain, err)
	}
	return err
}

type pushRequest struct {
	Target string `json:"target"`
	copyUse
}

// copyUse says what a snapshot's copy is for on its new node, so that the node readies the lazy-pages
// daemons its clones will want: Clones clones start there right after the copy (their daemons start during
// it), or the snapshot is a template (the node keeps spares for the clones to come, as its first node does).
type copyUse struct {
	Clones   int  `json:"clones,omitempty"`
	Template bool `json:"template,omitempty"`
}

type restoreRequest struct {
	Job  migrate.Job        `json:"job"`
	Dump migrate.DumpResult `json:"dump"`
}

type finishRequest struct {
	Job    migrate.Job `json:"job"`
	Commit bool        `json:"commit"`
}

type prepareResponse struct {
	PagePort int `json:"page_port"`
}
