package agent

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/node/checkpoint"
)

// runningJobs are the migrations this agent runs as the leader.
type runningJobs struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (r *runningJobs) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]bool{}
	}
	r.ids[id] = true
}

func (r *runningJobs) done(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.ids, id)
}

func (r *runningJobs) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

// migrateCmd is `ferry migrate`: on the leader, it plans the job, records it in raft and runs it, streaming
// progress; the answer's result is the report, also when the migration rolled back.
func (a *Agent) migrateCmd(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	body, err := readRequest(r, &req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	if a.router.proxyToLeader(w, r, body) {
		return
	}
	job, err := a.planMigration(req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	ctx := context.WithoutCancel(r.Context())
	if err := a.recordMigration(ctx, job); err != nil {
		api.WriteError(w, err)
		return
	}
	ew := api.NewEventWriter(w)
	var mu sync.Mutex
	progress := func(p migrate.Progress) {
		mu.Lock()
		defer mu.Unlock()
		_ = ew.Send(api.EventProgress, node.Progress{Phase: p.Phase, Bytes: p.Bytes, Elapsed: p.Elapsed})
	}
	rep, _ := a.runMigration(ctx, job, progress)
	mu.Lock()
	defer mu.Unlock()
	_ = ew.Send(api.EventResult, rep)
}

// recordMigration writes a planned migration to raft (which refuses a second active one for the container).
func (a *Agent) recordMigration(ctx context.Context, job migrate.Job) error {
	cj := cluster.MigrationJob{ID: job.ID, Container: job.Container, Source: job.Source, Target: job.Target, Mode: job.Mode}
	if _, err := a.store.Apply(ctx, &cluster.CreateMigration{Job: cj}); err != nil {
		return clusterError(err)
	}
	return nil
}

// runMigration runs a recorded migration as the leader, the same way for `ferry migrate` and a drain: its
// states go to raft, progress to the caller. The report says how it ended (also when it rolled back, with the
// error).
func (a *Agent) runMigration(ctx context.Context, job migrate.Job, progress func(migrate.Progress)) (*migrate.Report, error) {
	a.migrations.add(job.ID)
	defer a.migrations.done(job.ID)
	a.log.Info("migration starts", "job", job.ID, "container", job.Container, "from", job.Source, "to", job.Target, "mode", job.Mode)
	rep, err := migrate.Run(ctx, job, migrationNodes{a}, raftRecorder{a.store}, migrate.Options{Progress: progress, Logger: a.log})
	if err != nil {
		a.log.Warn("migration rolled back", "job", job.ID, "err", err)
	} else {
		a.log.Info("migration committed", "job", job.ID, "downtime", rep.Downtime.Round(time.Millisecond), "total", rep.Total.Round(time.Millisecond))
	}
	return rep, err
}

// planMigration checks the request against the cluster's state and picks the mode.
func (a *Agent) planMigration(req api.MigrateRequest) (migrate.Job, error) {
	st := a.store.State()
	c, ok := st.Containers[req.Container]
	if !ok {
		return migrate.Job{}, fmt.Errorf("%w: no container named %q in the cluster (ferry ps lists them)", node.ErrNotFound, req.Container)
	}
	if c.Config.NoMigrate {
		return migrate.Job{}, fmt.Errorf("%w: container %s was started with --no-migrate and stays on %s; stop it and run it elsewhere instead", node.ErrState, c.Name, c.Node)
	}
	if req.Source != "" && req.Source != c.Node {
		return migrate.Job{}, fmt.Errorf("%w: container %s runs on %s, not %s", node.ErrInvalid, c.Name, c.Node, req.Source)
	}
	if req.Target == c.Node {
		return migrate.Job{}, fmt.Errorf("%w: container %s already runs on %s", node.ErrInvalid, c.Name, c.Node)
	}
	dst, ok := st.Nodes[req.Target]
	if !ok {
		return migrate.Job{}, fmt.Errorf("%w: no node named %q in the cluster (ferry node ls lists them)", node.ErrNotFound, req.Target)
	}
	switch {
	case dst.Status != cluster.StatusAlive:
		return migrate.Job{}, fmt.Errorf("%w: node %s is %s; choose another target", node.ErrState, dst.Name, dst.Status)
	case !dst.Eligible:
		return migrate.Job{}, fmt.Errorf("%w: node %s is draining; choose another target or undrain it", node.ErrState, dst.Name)
	case dst.Maintenance:
		return migrate.Job{}, fmt.Errorf("%w: node %s is in maintenance; choose another target", node.ErrState, dst.Name)
	}
	if m := st.ActiveMigration(c.Name); m != nil {
		return migrate.Job{}, fmt.Errorf("%w: container %s is already being migrated (job %s)", node.ErrState, c.Name, m.ID)
	}
	src := st.Nodes[c.Node]
	if src == nil || src.Status != cluster.StatusAlive {
		return migrate.Job{}, fmt.Errorf("%w: the container's node %s is not alive; a migration needs it", node.ErrState, c.Node)
	}
	mode, err := migrate.ChooseMode(req.Mode, src.Name, dst.Name, cluster.FeatureList(src.Features), cluster.FeatureList(dst.Features))
	if err != nil {
		return migrate.Job{}, fmt.Errorf("%w: %v", node.ErrInvalid, err)
	}
	if mode == migrate.ModePreCopy && req.Mode != migrate.ModePreCopy {
		mode = migrate.ModeStopCopy // auto: this version does not run pre-copy rounds yet
	}
	if mode == migrate.ModePostCopy {
		return migrate.Job{}, a.checkPostCopy(src.Name, dst.Name)
	}
	if mode != migrate.ModeStopCopy {
		return migrate.Job{}, fmt.Errorf("%w: mode %s is not run by this version yet; use --mode stop-copy", node.ErrInvalid, mode)
	}
	if !slices.Contains(cluster.FeatureList(dst.Features), "network_lock") {
		return migrate.Job{}, fmt.Errorf("%w: node %s's CRIU cannot be used (its probe failed: see ferry node info %s)", node.ErrState, dst.Name, dst.Name)
	}
	return migrate.Job{ID: checkpoint.NewID(time.Now()), Container: c.Name, Image: c.Image, Source: c.Node, Target: dst.Name, Mode: mode}, nil
}

// gone reports whether node name left the cluster, or has been dead for the fencing delay (then, if it is
// only cut off, its self-fence has frozen what it runs that the cluster may settle elsewhere). Without
// failover (a negative delay) nodes do not fence themselves, and only a node that left is gone.
func (a *Agent) gone(st *cluster.State, name string) bool {
	n, ok := st.Nodes[name]
	switch {
	case !ok:
		return true
	case a.cfg.FailoverDelay <= 0 || n.Status != cluster.StatusDead || n.DownSince.IsZero():
		return false
	}
	return time.Since(n.DownSince) >= a.cfg.FailoverDelay
}

// recoverMigrations runs on a new leader: every unfinished migration a previous leader left is finished or
// rolled back, so that the container ends up running in exactly one place.
func (a *Agent) recoverMigrations(ctx context.Context) {
	for _, m := range a.store.State().UnfinishedMigrations() {
		if a.migrations.has(m.ID) {
			continue
		}
		job := migrate.Job{ID: m.ID, Container: m.Container, Source: m.Source, Target: m.Target, Mode: m.Mode}
		if c, ok := a.store.State().Containers[m.Container]; ok {
			job.Image = c.Image
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		st := a.store.State()
		outcome, err := migrate.Recover(rctx, job, migrationNodes{a}, raftRecorder{a.store}, migrate.Gone{Source: a.gone(st, m.Source), Target: a.gone(st, m.Target)})
		cancel()
		switch {
		case err != nil && outcome != "":
			a.log.Warn("finished a migration the previous leader left, not all of it", "job", m.ID, "container", m.Container, "outcome", outcome, "err", err)
			continue
		case err != nil:
			a.log.Error("could not finish a migration the previous leader left; will retry", "job", m.ID, "err", err)
			continue
		}
		a.log.Info("finished a migration the previous leader left", "job", m.ID, "container", m.Container, "outcome", outcome)
	}
}
