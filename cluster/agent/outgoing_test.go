package agent

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
)

func TestSettleOutgoing(t *testing.T) {
	now := time.Now()
	long := now.Add(-time.Hour)
	tests := []struct {
		name      string
		placedOn  string // "" : not in the cluster
		migration cluster.JobState
		updated   time.Time
		failover  cluster.JobState // of vg-1's failover item for np; "" : no failover
		want      outgoingStep
	}{
		{"the migration runs", "vg-1", cluster.JobRunning, long, "", outgoingWait},
		{"just rolled back: its runner thaws it", "vg-1", cluster.JobRolledBack, now, "", outgoingWait},
		{"rolled back while this node was away", "vg-1", cluster.JobRolledBack, long, "", outgoingThaw},
		{"committed while this node was away", "vg-2", cluster.JobCommitted, long, "", outgoingRemove},
		{"rolled back, then restored elsewhere by a failover", "vg-3", cluster.JobRolledBack, long, cluster.JobCommitted, outgoingRemove},
		{"rolled back, its failover still under way", "vg-1", cluster.JobRolledBack, long, cluster.JobRunning, outgoingWait},
		{"rolled back, its failover skipped it (no snapshots)", "vg-1", cluster.JobRolledBack, long, cluster.JobSkipped, outgoingThaw},
		{"removed from the cluster", "", cluster.JobRolledBack, long, "", outgoingRemove},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := cluster.NewState()
			st.Index = 9
			if tt.placedOn != "" {
				st.Containers["np"] = &cluster.Container{Name: "np", Node: tt.placedOn}
			}
			st.Migrations["m1"] = &cluster.MigrationJob{ID: "m1", Container: "np", Source: "vg-1", Target: "vg-2", State: tt.migration, UpdatedAt: tt.updated}
			// An older migration of another container from here does not matter.
			st.Migrations["m0"] = &cluster.MigrationJob{ID: "m0", Container: "other", Source: "vg-1", Target: "vg-2", State: cluster.JobCommitted, UpdatedAt: now}
			if tt.failover != "" {
				st.Drains["f1"] = &cluster.DrainJob{ID: "f1", Node: "vg-1", Reason: cluster.ReasonFailover, State: cluster.JobRunning,
					Items: []cluster.DrainItem{{Container: "np", State: tt.failover}}}
			}
			if got := settleOutgoing(st, "np", "vg-1", now); got != tt.want {
				t.Fatalf("settleOutgoing = %v, want %v", got, tt.want)
			}
		})
	}
	if got := settleOutgoing(cluster.NewState(), "np", "vg-1", now); got != outgoingWait {
		t.Fatalf("with no state yet: %v, want to wait", got)
	}
}
