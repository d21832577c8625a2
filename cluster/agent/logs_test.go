package agent

import (
	"net/http"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
)

// TestLogsFollowWaitsForTheMigration: when the log stream on a container's node ends, `logs -f` goes on
// from the new node if a migration moved it, waits while a migration away is still under way, and ends
// at once when the container simply stopped there.
func TestLogsFollowWaitsForTheMigration(t *testing.T) {
	c := cluster.MakeTestCluster(t, 3)
	leader := c.Leader()
	apply := func(op cluster.Op) {
		t.Helper()
		if _, err := leader.Apply(t.Context(), op); err != nil {
			t.Fatal(err)
		}
	}
	peers := &routedPeers{routers: map[string]*Router{}}
	for _, s := range c.Stores() {
		peers.routers[s.Name()] = NewRouter(s.Name(), s, http.NotFoundHandler(), peers, nil, cluster.TestLogger(t))
		apply(&cluster.RegisterNode{Node: cluster.Node{Name: s.Name(), Addr: s.Name()}})
	}
	src, dst := c.Stores()[0].Name(), c.Stores()[1].Name()
	apply(&cluster.PlaceContainer{Container: cluster.Container{Name: "np", Node: src, Image: "busybox"}})
	f := c.Followers()[0]
	rt := peers.routers[f.Name()]
	if err := f.WaitIndex(t.Context(), leader.AppliedIndex()); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if rt.movedFrom(t.Context(), "np", src) {
		t.Fatal("no migration, yet the container counts as moved")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a log that ended without a migration waited %s", d)
	}

	apply(&cluster.CreateMigration{Job: cluster.MigrationJob{ID: "m1", Container: "np", Source: src, Target: dst, Mode: "stop-copy", State: cluster.JobPlanned}})
	moved := make(chan bool, 1)
	go func() { moved <- rt.movedFrom(t.Context(), "np", src) }()
	select {
	case m := <-moved:
		t.Fatalf("movedFrom answered %v while the migration was under way", m)
	case <-time.After(500 * time.Millisecond):
	}
	apply(&cluster.UpdateMigration{ID: "m1", State: cluster.JobCommitted})
	select {
	case m := <-moved:
		if !m {
			t.Fatal("the migration committed, yet the container does not count as moved")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("movedFrom still waits after the migration committed")
	}

	// Rolled back: it stays where it was and the follow ends.
	apply(&cluster.CreateMigration{Job: cluster.MigrationJob{ID: "m2", Container: "np", Source: dst, Target: src, Mode: "stop-copy", State: cluster.JobPlanned}})
	go func() { moved <- rt.movedFrom(t.Context(), "np", dst) }()
	time.Sleep(200 * time.Millisecond)
	apply(&cluster.UpdateMigration{ID: "m2", State: cluster.JobRolledBack})
	select {
	case m := <-moved:
		if m {
			t.Fatal("the migration rolled back, yet the container counts as moved")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("movedFrom still waits after the migration rolled back")
	}
}
