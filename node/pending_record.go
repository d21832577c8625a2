package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
)

// A pending record sits beside a snapshot whose dump stopped its container (snapshots/ID.record), from
// before the container is stopped until the cluster has recorded the snapshot. The node never takes such a
// snapshot for forgotten: it is all that is left of the container. The bytes are the caller's (the cluster
// agent's record of the snapshot); the node only keeps them.

const pendingRecordExt = ".record"

func (a *Agent) pendingRecordPath(id string) string {
	return filepath.Join(a.snapshotsDir(), id+pendingRecordExt)
}

// PendingRecord is a record kept beside a snapshot until the cluster has it.
type PendingRecord struct {
	ID      string
	Data    []byte
	Written time.Time
}

// PendingRecords lists the records kept beside this node's snapshots, oldest snapshot first.
func (a *Agent) PendingRecords() ([]PendingRecord, error) {
	ents, err := os.ReadDir(a.snapshotsDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []PendingRecord
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), pendingRecordExt)
		if !ok || e.IsDir() || !checkpoint.ValidID(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.snapshotsDir(), e.Name()))
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, PendingRecord{ID: id, Data: b, Written: fi.ModTime()})
	}
	return out, nil
}

// ClearPendingRecord drops the record kept beside snapshot id, once the cluster has it (or the snapshot
// is gone).
func (a *Agent) ClearPendingRecord(id string) {
	if !checkpoint.ValidID(id) {
		return
	}
	if err := os.Remove(a.pendingRecordPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("removing a snapshot's pending record", "id", id, "err", err)
	}
}
