package stream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, smallTree())
	m, err := BuildManifest(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sends, recvs []Progress
	so := SendOptions{Progress: func(p Progress) { mu.Lock(); sends = append(sends, p); mu.Unlock() }, ProgressInterval: time.Millisecond}
	ro := ReceiveOptions{Progress: func(p Progress) { mu.Lock(); recvs = append(recvs, p); mu.Unlock() }}
	dst := filepath.Join(t.TempDir(), "out")
	if _, _, _, serr, rerr := pipeTransfer(ctx, src, dst, m, so, ro); serr != nil || rerr != nil {
		t.Fatalf("send: %v; receive: %v", serr, rerr)
	}
	mu.Lock()
	defer mu.Unlock()
	for name, ps := range map[string][]Progress{"send": sends, "receive": recvs} {
		last := ps[len(ps)-1]
		if !last.Done || last.RawDone != m.TotalSize() || last.RawTotal != m.TotalSize() ||
			last.FilesDone != len(m.Entries) || last.WireDone == 0 {
			t.Errorf("%s: last progress %+v, want done with %d bytes", name, last, m.TotalSize())
		}
		for i := 1; i < len(ps); i++ {
			if ps[i].RawDone < ps[i-1].RawDone {
				t.Errorf("%s: RawDone went back", name)
			}
		}
	}
}

// chunkedSlowWriter splits writes into small delayed pieces.
type chunkedSlowWriter struct{ w io.Writer }

func (s chunkedSlowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 16<<10)
		time.Sleep(2 * time.Millisecond)
		m, err := s.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

func TestCancelStopsBothSides(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"pages-1.img": mixedData(16<<20, 9)})
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	dst := filepath.Join(t.TempDir(), "out")
	serr := make(chan error, 1)
	go func() {
		_, err := Send(ctx, chunkedSlowWriter{pw}, src, m, SendOptions{})
		serr <- err
	}()
	rerr := make(chan error, 1)
	go func() {
		_, _, err := Receive(ctx, pr, dst, ReceiveOptions{})
		rerr <- err
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	for name, ch := range map[string]chan error{"send": serr, "receive": rerr} {
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: err = %v, want context.Canceled", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not stop within 5s of cancel", name)
		}
	}
	pr.Close()
	pw.Close()
	noSuchDir(t, dst)
	onlyEntries(t, filepath.Dir(dst))
}

// writeMixedFile writes size bytes, the first half text-like and the second
// random, without holding them in memory.
func writeMixedFile(t testing.TB, p string, size int) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	const piece = 1 << 20
	for off := 0; off < size; off += piece {
		d := mixedData(2*piece, uint64(off))
		if off < size/2 {
			d = d[:piece]
		} else {
			d = d[piece:]
		}
		if _, err := w.Write(d[:min(piece, size-off)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// vmHWM returns the process's peak resident set from /proc/self/status.
func vmHWM() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

// TestPeakMemory sends and receives 256 MiB through an io.Pipe in this
// process and checks the heap stays small (sampled every 5 ms).
func TestPeakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("256 MiB transfer")
	}
	src := t.TempDir()
	writeMixedFile(t, filepath.Join(src, "pages-1.img"), 256<<20)
	writeTree(t, src, smallTree())
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop, peak := sampleHeap()
	dst := filepath.Join(t.TempDir(), "out")
	sst, _, _, serr, rerr := pipeTransfer(context.Background(), src, dst, m, SendOptions{}, ReceiveOptions{})
	p := stop()
	if serr != nil || rerr != nil {
		t.Fatalf("send: %v; receive: %v", serr, rerr)
	}
	t.Logf("256 MiB: %.0f MB/s, ratio %.3f; peak heap in use %.1f MiB (%.1f MiB before); VmHWM %s",
		float64(sst.RawBytes)/1e6/sst.Duration.Seconds(), sst.Ratio(), float64(p)/(1<<20), float64(base.HeapInuse)/(1<<20), vmHWM())
	_ = peak
	if p > 64<<20 {
		t.Errorf("peak heap in use %d MiB, want under 64 MiB", p>>20)
	}
}

// sampleHeap samples HeapInuse until stop is called, which returns the peak.
func sampleHeap() (stop func() uint64, peak *uint64) {
	var max uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > max {
				max = ms.HeapInuse
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return max }, &max
}
