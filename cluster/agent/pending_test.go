package agent

import (
	"testing"
	"time"

	"github.com/ferryhq/ferry/cluster"
)

func TestPendingAction(t *testing.T) {
	const id = "20261124T100000Z-0000aaaa"
	recorded := &cluster.State{Index: 7, Snapshots: map[string]*cluster.Snapshot{id: {ID: id}}}
	unrecorded := &cluster.State{Index: 7, Snapshots: map[string]*cluster.Snapshot{}}
	tests := []struct {
		name string
		st   *cluster.State
		have bool
		age  time.Duration
		want pendingStep
	}{
		{"the data is gone", unrecorded, false, time.Hour, pendingClear},
		{"the cluster has it", recorded, true, time.Second, pendingClear},
		{"no state yet", &cluster.State{}, true, time.Hour, pendingWait},
		{"the asking agent may still write it", unrecorded, true, time.Second, pendingWait},
		{"the asking agent's write failed", unrecorded, true, pendingGrace + time.Second, pendingRecord},
		{"hours later, after restarts", unrecorded, true, 5 * time.Hour, pendingRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pendingAction(tt.st, id, tt.have, tt.age); got != tt.want {
				t.Fatalf("pendingAction = %v, want %v", got, tt.want)
			}
		})
	}
}
