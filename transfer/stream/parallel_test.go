package stream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
)

// parallelTransfer sends src over n io.Pipes and receives into dst; perm
// reorders the readers handed to the receiver.
func parallelTransfer(ctx context.Context, src, dst string, m *Manifest, n int, so SendOptions, perm []int) (Stats, Stats, error, error) {
	ws := make([]io.Writer, n)
	prs := make([]*io.PipeReader, n)
	pws := make([]*io.PipeWriter, n)
	for i := range n {
		prs[i], pws[i] = io.Pipe()
		ws[i] = pws[i]
	}
	rs := make([]io.Reader, n)
	for i := range n {
		rs[i] = prs[perm[i]]
	}
	type res struct {
		st  Stats
		err error
	}
	ch := make(chan res, 1)
	go func() {
		st, err := SendParallel(ctx, ws, src, m, so)
		for _, pw := range pws {
			pw.CloseWithError(err)
		}
		ch <- res{st, err}
	}()
	_, rst, rerr := ReceiveParallel(ctx, rs, dst, ReceiveOptions{Sync: true})
	for _, pr := range prs {
		pr.CloseWithError(errors.New("receiver done"))
	}
	s := <-ch
	return s.st, rst, s.err, rerr
}

func TestParallelRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := sampleTree(64 << 20)
	writeTree(t, src, files)
	m, err := BuildManifest(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	sst, rst, serr, rerr := parallelTransfer(ctx, src, dst, m, 4, SendOptions{}, []int{2, 0, 3, 1})
	if serr != nil || rerr != nil {
		t.Fatalf("send: %v; receive: %v", serr, rerr)
	}
	sameTree(t, dst, files)
	if sst.RawBytes != m.TotalSize() || rst.RawBytes != m.TotalSize() || sst.WireBytes != rst.WireBytes || rst.Files != len(files) {
		t.Errorf("stats: send %+v receive %+v total %d", sst, rst, m.TotalSize())
	}
	t.Logf("4 streams: raw %d wire %d ratio %.3f in %v", sst.RawBytes, sst.WireBytes, sst.Ratio(), sst.Duration)
}

func TestParallelChunksSpread(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"pages-1.img": mixedData(4<<20, 5)})
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([]*bytes.Buffer, 4)
	ws := make([]io.Writer, 4)
	for i := range bufs {
		bufs[i] = new(bytes.Buffer)
		ws[i] = bufs[i]
	}
	so := SendOptions{FrameSize: 64 << 10, ChunkSize: 256 << 10, Depth: 1}
	if _, err := SendParallel(context.Background(), ws, src, m, so); err != nil {
		t.Fatal(err)
	}
	rs := make([]io.Reader, 4)
	for i, b := range bufs {
		chunks := 0
		for _, f := range framesOf(t, b.Bytes()) {
			if f.typ == frChunk {
				chunks++
			}
		}
		t.Logf("stream %d: %d chunks, %d bytes", i, chunks, b.Len())
		if chunks == 0 {
			t.Errorf("stream %d carried no chunk of the 4 MiB file", i)
		}
		rs[i] = bytes.NewReader(b.Bytes())
	}
	dst := filepath.Join(t.TempDir(), "out")
	if _, _, err := ReceiveParallel(context.Background(), rs, dst, ReceiveOptions{}); err != nil {
		t.Fatal(err)
	}
}

// sendParallelBytes sends src over n buffers.
func sendParallelBytes(t *testing.T, src string, m *Manifest, n int) [][]byte {
	t.Helper()
	bufs := make([]*bytes.Buffer, n)
	ws := make([]io.Writer, n)
	for i := range bufs {
		bufs[i] = new(bytes.Buffer)
		ws[i] = bufs[i]
	}
	so := SendOptions{FrameSize: 64 << 10, ChunkSize: 128 << 10}
	if _, err := SendParallel(context.Background(), ws, src, m, so); err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, n)
	for i, b := range bufs {
		out[i] = b.Bytes()
	}
	return out
}

func TestParallelRefuses(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, smallTree())
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	a, b := sendParallelBytes(t, src, m, 3), sendParallelBytes(t, src, m, 3)
	flipped := bytes.Clone(a[1])
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name    string
		streams [][]byte
		want    error
	}{
		{"mixed transfers", [][]byte{a[0], b[1], a[2]}, ErrCorrupt},
		{"stream twice", [][]byte{a[0], a[0], a[2]}, ErrCorrupt},
		{"stream missing", [][]byte{a[0], a[2]}, ErrCorrupt},
		{"corrupt stream", [][]byte{a[0], flipped, a[2]}, ErrCorrupt},
		{"truncated stream", [][]byte{a[0], a[1][:len(a[1])/2], a[2]}, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := make([]io.Reader, len(tt.streams))
			for i, s := range tt.streams {
				rs[i] = bytes.NewReader(s)
			}
			dst := filepath.Join(t.TempDir(), "out")
			_, _, err := ReceiveParallel(context.Background(), rs, dst, ReceiveOptions{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			t.Log(err)
			noSuchDir(t, dst)
			onlyEntries(t, filepath.Dir(dst))
		})
	}
}
