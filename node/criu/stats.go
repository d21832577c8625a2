package criu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/stats"
)

// DumpStats is CRIU's own account of a dump (from its stats-dump file).
type DumpStats struct {
	FreezingTime time.Duration `json:"freezing_time"`
	FrozenTime   time.Duration `json:"frozen_time"`
	MemdumpTime  time.Duration `json:"memdump_time"`
	MemwriteTime time.Duration `json:"memwrite_time"`
	PagesScanned uint64        `json:"pages_scanned"`
	PagesWritten uint64        `json:"pages_written"`
	PagesSkipped uint64        `json:"pages_skipped_parent"`
	PagesLazy    uint64        `json:"pages_lazy"`
}

// RestoreStats is CRIU's own account of a restore (from its stats-restore file).
type RestoreStats struct {
	ForkingTime    time.Duration `json:"forking_time"`
	RestoreTime    time.Duration `json:"restore_time"`
	PagesRestored  uint64        `json:"pages_restored"`
	PagesCompared  uint64        `json:"pages_compared"`
	PagesSkippedCo uint64        `json:"pages_skipped_cow"`
}

// ReadDumpStats reads stats-dump from dir (CRIU writes it to its work directory) with go-criu.
func ReadDumpStats(dir string) (*DumpStats, error) {
	d, err := openStatsDir(dir, stats.StatsDump)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	st, err := stats.CriuGetDumpStats(d)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, stats.StatsDump), err)
	}
	return &DumpStats{
		FreezingTime: us(st.GetFreezingTime()),
		FrozenTime:   us(st.GetFrozenTime()),
		MemdumpTime:  us(st.GetMemdumpTime()),
		MemwriteTime: us(st.GetMemwriteTime()),
		PagesScanned: st.GetPagesScanned(),
		PagesWritten: st.GetPagesWritten(),
		PagesSkipped: st.GetPagesSkippedParent(),
		PagesLazy:    st.GetPagesLazy(),
	}, nil
}

// ReadRestoreStats reads stats-restore from dir with go-criu.
func ReadRestoreStats(dir string) (*RestoreStats, error) {
	d, err := openStatsDir(dir, stats.StatsRestore)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	st, err := stats.CriuGetRestoreStats(d)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, stats.StatsRestore), err)
	}
	return &RestoreStats{
		ForkingTime:    us(st.GetForkingTime()),
		RestoreTime:    us(st.GetRestoreTime()),
		PagesRestored:  st.GetPagesRestored(),
		PagesCompared:  st.GetPagesCompared(),
		PagesSkippedCo: st.GetPagesSkippedCow(),
	}, nil
}

func openStatsDir(dir, name string) (*os.File, error) {
	if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoStats, filepath.Join(dir, name))
	}
	return os.Open(dir)
}

func us(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
