package cluster

// Benchmarks of the cluster state at scale, for scripts/bench.sh cluster
// (which runs them with a fixed -benchtime and parses the output). The state
// is bigState's: 5 nodes, 1,000 containers and 10,000 snapshot records.
//
//	go test -run '^$' -bench '^BenchmarkCluster' -benchtime 2000x ./cluster/
//
// Each uses b.Loop, so its setup runs once however many iterations it takes.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// benchStore opens a single-node store with the bbolt log and stable store
// and the file snapshot store on disk, waits until it leads, and loads the
// big state into it through a raft user snapshot restore (the same FSM
// Restore a follower runs on InstallSnapshot), which takes well under a
// second where 11,000 single applies would take many.
func benchStore(b *testing.B) *Store {
	b.Helper()
	cfg := diskConfig(b, "vg-1", b.TempDir(), "127.0.0.1:0", nil)
	cfg.Bootstrap = true
	cfg.Logger = discard()
	s := openStore(b, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	for !s.IsLeader() {
		time.Sleep(5 * time.Millisecond)
	}
	var buf bytes.Buffer
	if err := WriteState(&buf, bigState(b).fsm.State()); err != nil {
		b.Fatal(err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(buf.Len())}
	if err := s.raft.Restore(meta, &buf, 30*time.Second); err != nil {
		b.Fatalf("load the benchmark state: %v", err)
	}
	st := s.State()
	if len(st.Containers) != 1000 || len(st.Snapshots) != 10000 {
		b.Fatalf("loaded state has %d containers and %d snapshots, want 1000 and 10000", len(st.Containers), len(st.Snapshots))
	}
	return s
}

// BenchmarkClusterApply measures commands per second through real raft with
// the on-disk stores on one node, against the big state: writers=1 is one
// write at a time (each waits for its own fsync), more writers apply
// concurrently, as the agents and their goroutines do, and raft batches them.
// The command is an UpdateContainer (desired running/stopped), the most
// common write; a run of the same 1,000 containers round-robin.
func BenchmarkClusterApply(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := benchStore(b)
			ctx := context.Background()
			var wg sync.WaitGroup
			var errOnce sync.Once
			next := make(chan int, writers)
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						d := DesiredStopped
						if i%2 == 0 {
							d = DesiredRunning
						}
						if _, err := s.Apply(ctx, &UpdateContainer{Name: fmt.Sprintf("c%04d", i%1000), Desired: &d}); err != nil {
							errOnce.Do(func() { b.Error(err) })
						}
					}
				}()
			}
			n := 0
			start := time.Now()
			for b.Loop() {
				next <- n
				n++
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "cmds/s")
		})
	}
}

// heapInUse is the heap in use after a full collection.
func heapInUse() (inuse, alloc uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.HeapAlloc
}

// BenchmarkClusterFSMSnapshot measures an FSM snapshot of the big state:
// Snapshot and Persist into memory. It reports the snapshot's size and the
// heap the state holds (heap in use, and live bytes, after a collection,
// minus the same before the state was built).
func BenchmarkClusterFSMSnapshot(b *testing.B) {
	inuse0, alloc0 := heapInUse()
	h := bigState(b)
	inuse1, alloc1 := heapInUse()
	var sink memSink
	for b.Loop() {
		sink.Reset()
		snap, err := h.fsm.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		snap.Release()
	}
	b.ReportMetric(float64(sink.Len()), "snapshot-bytes")
	b.ReportMetric(float64(int64(inuse1)-int64(inuse0)), "state-heap-inuse-bytes")
	b.ReportMetric(float64(int64(alloc1)-int64(alloc0)), "state-heap-live-bytes")
	runtime.KeepAlive(h)
}

// BenchmarkClusterFSMRestore measures restoring a fresh FSM from a snapshot
// of the big state held in memory.
func BenchmarkClusterFSMRestore(b *testing.B) {
	var buf bytes.Buffer
	if err := WriteState(&buf, bigState(b).fsm.State()); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	for b.Loop() {
		if err := NewFSM().Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "snapshot-bytes")
}

// BenchmarkClusterFSMApply is the FSM alone (decode and apply, no raft, no
// disk) against the big state: the ceiling the raft figures are bounded by.
func BenchmarkClusterFSMApply(b *testing.B) {
	h := bigState(b)
	n := 0
	start := time.Now()
	for b.Loop() {
		d := DesiredStopped
		if n%2 == 0 {
			d = DesiredRunning
		}
		h.must(&UpdateContainer{Name: fmt.Sprintf("c%04d", n%1000), Desired: &d})
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "cmds/s")
}
