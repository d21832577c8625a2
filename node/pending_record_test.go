package node

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/runtime"
)

func TestPendingRecords(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{cfg: Config{Name: "vg-1", DataDir: dir}, log: slog.Default()}
	if recs, err := a.PendingRecords(); err != nil || len(recs) != 0 {
		t.Fatalf("no snapshots dir: %v, %v", recs, err)
	}
	id := checkpoint.NewID(time.Now())
	if err := a.AcceptSnapshot(context.Background(), id, receivedCopy(t, dir, id), nil); err != nil {
		t.Fatal(err)
	}
	if err := runtime.WriteFileAtomic(a.pendingRecordPath(id), []byte(`{"id":"`+id+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Names that are not a snapshot's record are left out.
	for _, name := range []string{"Not An ID.record", id + ".json"} {
		if err := os.WriteFile(filepath.Join(a.snapshotsDir(), name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := a.PendingRecords()
	if err != nil || len(recs) != 1 || recs[0].ID != id || string(recs[0].Data) != `{"id":"`+id+`"}` || time.Since(recs[0].Written) > time.Minute {
		t.Fatalf("PendingRecords = %+v, %v; want the one record", recs, err)
	}
	// The record is no snapshot of its own.
	if ids, err := a.Snapshots(); err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("Snapshots = %v, %v; want [%s]", ids, err, id)
	}
	a.ClearPendingRecord("../" + id) // a bad id touches nothing
	if recs, _ := a.PendingRecords(); len(recs) != 1 {
		t.Fatalf("a bad id cleared a record: %+v", recs)
	}
	// Removing the snapshot removes its record.
	if err := a.RemoveSnapshot(id); err != nil {
		t.Fatal(err)
	}
	if recs, err := a.PendingRecords(); err != nil || len(recs) != 0 {
		t.Fatalf("after RemoveSnapshot: %+v, %v; want no record", recs, err)
	}
}
