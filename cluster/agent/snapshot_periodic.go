package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

// Periodic snapshots (ferry run --snapshot-every D --keep N): the leader snapshots each such container that
// is meant to run once its newest periodic snapshot is D old, and drops the oldest periodic snapshots beyond N
// (record and data on every node that holds them). Snapshots taken by hand do not count and are never dropped.

// defaultKeep is how many periodic snapshots are kept when --keep is not given.
const defaultKeep = 3

// minSnapshotEvery bounds --snapshot-every from below: each snapshot freezes the container for its dump.
const minSnapshotEvery = 5 * time.Second

func checkPeriodic(every time.Duration, keep int) error {
	switch {
	case every < 0 || keep < 0:
		return fmt.Errorf("%w: --snapshot-every %s --keep %d: neither may be negative", node.ErrInvalid, every, keep)
	case every == 0 && keep != 0:
		return fmt.Errorf("%w: --keep needs --snapshot-every", node.ErrInvalid)
	case every != 0 && every < minSnapshotEvery:
		return fmt.Errorf("%w: --snapshot-every %s: use at least %s", node.ErrInvalid, every, minSnapshotEvery)
	}
	return nil
}

// runPeriodicSnapshots is a leader loop; it returns when ctx ends (leadership lost).
func (a *Agent) runPeriodicSnapshots(ctx context.Context) {
	tickEvery(ctx, time.Second, func() {
		for _, c := range a.store.State().ContainerList() {
			if c.Config.SnapshotEvery <= 0 || c.Desired != cluster.DesiredRunning {
				continue
			}
			a.periodicSnapshot(ctx, c)
		}
	})
}

func (a *Agent) periodicSnapshot(ctx context.Context, c *cluster.Container) {
	st := a.store.State()
	var auto []*cluster.Snapshot
	for _, sn := range st.SnapshotsOf(c.Name) {
		if sn.Auto {
			auto = append(auto, sn)
		}
	}
	sort.Slice(auto, func(i, j int) bool { return auto[i].ID < auto[j].ID })
	if len(auto) > 0 && time.Since(auto[len(auto)-1].Created) < c.Config.SnapshotEvery {
		return
	}
	if !a.alive(st, c.Node) || st.ActiveMigration(c.Name) != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	res, err := a.CreateSnapshot(sctx, api.SnapshotRequest{Container: c.Name}, true, nil)
	if err != nil {
		a.log.Warn("periodic snapshot failed; will try again", "container", c.Name, "err", err)
		return
	}
	keep := c.Config.Keep
	if keep <= 0 {
		keep = defaultKeep
	}
	if sn, ok := a.store.State().Snapshots[res.Snapshot.ID]; ok {
		auto = append(auto, sn)
	}
	for _, sn := range periodicToDrop(auto, keep) {
		if _, err := a.removeSnapshot(sctx, sn); err != nil {
			a.log.Warn("dropping an old periodic snapshot", "id", sn.ID, "err", err)
		}
	}
}

// periodicToDrop returns the periodic snapshots to drop from auto (oldest first) so that keep are left: the
// oldest, except that the newest good snapshot with a copy on another node is kept beyond keep while none of
// the newer ones is both (their copies failed, or they are bad), so that losing the node never loses every
// snapshot a failover could restore from.
func periodicToDrop(auto []*cluster.Snapshot, keep int) []*cluster.Snapshot {
	if len(auto) <= keep {
		return nil
	}
	drop, kept := auto[:len(auto)-keep], auto[len(auto)-keep:]
	safe := func(sn *cluster.Snapshot) bool {
		return !sn.Bad && slices.ContainsFunc(sn.Copies, func(c string) bool { return c != sn.Node })
	}
	if slices.ContainsFunc(kept, safe) {
		return drop
	}
	for i := len(drop) - 1; i >= 0; i-- {
		if safe(drop[i]) {
			return slices.Delete(slices.Clone(drop), i, i+1)
		}
	}
	return drop
}
