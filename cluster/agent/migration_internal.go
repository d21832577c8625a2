package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/transfer/stripe"
)

// Internal, agent-to-agent steps of a migration and of image distribution; the leader calls them.
func (a *Agent) registerInternal(rt *Router) {
	rt.handle("POST /v1/internal/migrations/{id}/prepare", a.agentsOnly(a.prepareIncoming))
	rt.handle("POST /v1/internal/migrations/{id}/dump", a.agentsOnly(a.dumpOutgoing))
	rt.handle("POST /v1/internal/migrations/{id}/restore", a.agentsOnly(a.restoreIncoming))
	rt.handle("POST /v1/internal/migrations/{id}/finish", a.agentsOnly(a.finishOutgoing))
	rt.handle("POST /v1/internal/migrations/{id}/abort", a.agentsOnly(a.abortIncoming))
	rt.handle("POST /v1/internal/images/{name}/push", a.agentsOnly(a.pushImageTo))
	rt.handle("POST /v1/internal/layers", a.agentsOnly(a.haveLayers))
	rt.handle("POST /v1/internal/probe/post-copy", a.agentsOnly(a.probePostCopy))
	rt.handle("POST /v1/migrations", a.migrateCmd)
	rt.handle("POST /v1/debug/send", a.sendCmd)
}

// agentsOnly refuses operators: these calls are steps of a job the leader drives.
func (a *Agent) agentsOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c := callerOf(r); !c.trusted() {
			api.WriteError(w, fmt.Errorf("%w: internal call", api.ErrForbidden))
			return
		}
		h(w, r)
	}
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", node.ErrInvalid, err)
	}
	return nil
}

// answer writes v, or err as an error answer.
func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		api.WriteError(w, err)
		return
	}
	api.WriteJSON(w, 200, v)
}

func (a *Agent) prepareIncoming(w http.ResponseWriter, r *http.Request) {
	var j migrate.Job
	if err := decode(r, &j); err != nil {
		answer(w, nil, err)
		return
	}
	in, err := a.node.PrepareIncoming(r.Context(), r.PathValue("id"), j.Container, true)
	if err != nil {
		answer(w, nil, err)
		return
	}
	answer(w, prepareResponse{PagePort: in.PagePort}, nil)
}

// dumpOutgoing is the source's part: freeze and dump with the pages going through the tunnel to the target
// while CRIU dumps, then stream the rest. The container is left frozen for the leader to commit or roll back.
func (a *Agent) dumpOutgoing(w http.ResponseWriter, r *http.Request) {
	var j migrate.Job
	if err := decode(r, &j); err != nil {
		answer(w, nil, err)
		return
	}
	ctx := context.WithoutCancel(r.Context())
	res, err := a.dumpAndSend(ctx, j)
	answer(w, res, err)
}

func (a *Agent) dumpAndSend(ctx context.Context, j migrate.Job) (*migrate.DumpResult, error) {
	targetAddr, err := a.router.nodeAddr(j.Target)
	if err != nil {
		return nil, err
	}
	tun, err := a.openPageTunnel(ctx, targetAddr, j.ID)
	if err != nil {
		return nil, err
	}
	md, err := a.node.DumpForMigration(ctx, j.Container, node.MigrationDumpOptions{PageServer: tun.Addr()})
	if err != nil {
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		if sum := tun.Wait(tctx); sum.Err != nil && !errors.Is(sum.Err, context.DeadlineExceeded) {
			// The tunnel's failure comes first: CRIU only saw its page server go away.
			err = fmt.Errorf("page tunnel to %s: %v; CRIU's dump stopped with it: %w", j.Target, sum.Err, err)
		}
		cancel()
		return nil, err
	}
	dumped := time.Now()
	if a.fault("stall-migration-dump") {
		// The container is frozen and dumped; the source stalls here, as one that dies or is cut off now.
		a.log.Warn("stalling a migration's dump (injected fault)", "job", j.ID)
		select {
		case <-a.ctx.Done():
		case <-time.After(5 * time.Minute):
		}
		return nil, fmt.Errorf("%w: a migration's dump stalled (injected fault)", node.ErrState)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	sum := tun.Wait(wctx)
	cancel()
	if sum.Err != nil {
		return nil, fmt.Errorf("page tunnel to %s: %w", j.Target, sum.Err)
	}
	tunnelled := time.Now()
	st, err := a.sendDir(ctx, targetAddr, streamHeader{Kind: streamMigration, ID: j.ID}, md.Dir, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("streaming the dump to %s: %w", j.Target, err)
	}
	a.log.Info("migration dump timings", "job", j.ID, "dump", dumped.Sub(md.FrozenAt).Round(time.Millisecond),
		"tunnel_tail", tunnelled.Sub(dumped).Round(time.Millisecond), "stream", time.Since(tunnelled).Round(time.Millisecond),
		"frozen_so_far", time.Since(md.FrozenAt).Round(time.Millisecond))
	res := &migrate.DumpResult{FrozenAt: md.FrozenAt, DumpTook: md.DumpTook, PagesBytes: sum.Bytes, PagesWire: sum.Wire, PagesDigest: sum.Digest,
		StreamRaw: st.RawBytes, StreamWire: st.WireBytes, Files: st.Files, CRIU: md.CRIU, SentAt: time.Now()}
	return res, nil
}

// restoreIncoming is the target's last part: the pages' hash must match the source's before anything is
// restored; then the checkpoint is assembled and the container restored.
func (a *Agent) restoreIncoming(w http.ResponseWriter, r *http.Request) {
	var req restoreRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	id := r.PathValue("id")
	ctx := context.WithoutCancel(r.Context())
	res, err := a.checkAndRestore(ctx, id, req)
	if err != nil {
		a.node.AbortIncoming(id)
	}
	answer(w, res, err)
}

func (a *Agent) checkAndRestore(ctx context.Context, id string, req restoreRequest) (*migrate.RestoreResult, error) {
	started := time.Now()
	defer a.pages.drop(id)
	var got pageSum
	select {
	case got = <-a.pages.slot(id):
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%w: no pages arrived through the tunnel for migration %s", migrate.ErrIntegrity, id)
	}
	if errors.Is(got.Err, stripe.ErrCorrupt) {
		return nil, fmt.Errorf("%w: the pages arrived damaged (%v); nothing was restored", migrate.ErrIntegrity, got.Err)
	}
	if got.Err != nil {
		return nil, fmt.Errorf("%w: the page tunnel broke: %v", migrate.ErrIntegrity, got.Err)
	}
	if got.Digest != req.Dump.PagesDigest || got.Bytes != req.Dump.PagesBytes {
		return nil, fmt.Errorf("%w: the pages' digest here is %.12s (%d bytes), the source sent %.12s (%d bytes); nothing was restored",
			migrate.ErrIntegrity, got.Digest, got.Bytes, req.Dump.PagesDigest, req.Dump.PagesBytes)
	}
	dir, ok := a.received.take(id)
	if !ok {
		return nil, fmt.Errorf("%w: the rest of the dump never arrived for migration %s", migrate.ErrIntegrity, id)
	}
	defer os.RemoveAll(dir)
	rep, err := a.node.RestoreIncoming(ctx, id, dir, nil)
	if err != nil {
		return nil, err
	}
	return &migrate.RestoreResult{StartedAt: started, RunningAt: time.Now(), Took: rep.Took, Pid: rep.Pid, CRIU: rep.CRIU}, nil
}

func (a *Agent) finishOutgoing(w http.ResponseWriter, r *http.Request) {
	var req finishRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	err := a.node.FinishMigration(context.WithoutCancel(r.Context()), req.Job.Container, req.Commit)
	if !req.Commit && errorsIsState(err) {
		err = nil // not frozen (the dump never happened): nothing to thaw
	}
	answer(w, map[string]bool{"ok": err == nil}, err)
}

// abortIncoming drops what the target has of a migration: the prepared checkpoint, what was received, and a
// copy it may already have restored (when the commit could not be recorded).
func (a *Agent) abortIncoming(w http.ResponseWriter, r *http.Request) {
	var j migrate.Job
	if err := decode(r, &j); err != nil {
		answer(w, nil, err)
		return
	}
	id := r.PathValue("id")
	a.node.AbortIncoming(id)
	a.pages.drop(id)
	if dir, ok := a.received.take(id); ok {
		_ = os.RemoveAll(dir)
	}
	var err error
	if c, gerr := a.node.Get(j.Container); gerr == nil && c.Checkpoint == id {
		err = a.node.Remove(context.WithoutCancel(r.Context()), j.Container, true)
	}
	answer(w, map[string]bool{"ok": err == nil}, err)
}

func (a *Agent) pushImageTo(w http.ResponseWriter, r *http.Request) {
	var req pushRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	name := r.PathValue("name")
	ctx := context.WithoutCancel(r.Context())
	img, err := a.node.Images().Get(name)
	if err != nil {
		answer(w, nil, fmt.Errorf("%w: image %s is not on node %s", node.ErrNotFound, name, a.cfg.Name))
		return
	}
	var have map[string]bool
	if err := a.callAgent(ctx, req.Target, "POST", "/v1/internal/layers", img.Layers, &have); err != nil {
		answer(w, nil, err)
		return
	}
	addr, err := a.router.nodeAddr(req.Target)
	if err != nil {
		answer(w, nil, err)
		return
	}
	st, err := a.pushImage(ctx, name, addr, have)
	answer(w, st, err)
}

// haveLayers says which of the given layers this node holds.
func (a *Agent) haveLayers(w http.ResponseWriter, r *http.Request) {
	var ids []string
	if err := decode(r, &ids); err != nil {
		answer(w, nil, err)
		return
	}
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = a.node.Images().HasLayer(id)
	}
	answer(w, have, nil)
}

func errorsIsState(err error) bool { return errors.Is(err, node.ErrState) }
