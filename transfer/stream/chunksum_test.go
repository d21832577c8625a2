package stream

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// TestListManifestRoundTrip: a manifest without digests (no pass over the files before sending) still
// brings every file whole, over one stream and over several.
func TestListManifestRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := sampleTree(24 << 20)
	writeTree(t, src, files)
	m, err := ListManifest(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Entries {
		if e.SHA256 != "" || e.Size != int64(len(files[e.Path])) {
			t.Fatalf("entry %+v", e)
		}
	}
	for _, n := range []int{1, 3} {
		dst := filepath.Join(t.TempDir(), "out")
		perm := []int{0, 1, 2}[:n]
		if n == 3 {
			perm = []int{2, 0, 1}
		}
		_, _, serr, rerr := parallelTransfer(ctx, src, dst, m, n, SendOptions{}, perm)
		if serr != nil || rerr != nil {
			t.Fatalf("%d streams: send: %v; receive: %v", n, serr, rerr)
		}
		sameTree(t, dst, files)
	}
}

// TestChunkSumMismatch: a chunk whose bytes do not hash to the sum in its end frame is refused with
// ErrChecksum naming the file, whether or not the manifest has the file's digest.
func TestChunkSumMismatch(t *testing.T) {
	data := []byte("the pages of a process")
	for _, manifestSum := range []string{"", sumHex(data)} {
		wire := craftStream([]Entry{{Path: "pages-1.img", Size: int64(len(data)), SHA256: manifestSum}}, [][]byte{data})
		// The end frame's sum is the last 32 bytes of its payload; replace it and fix the frame's CRC.
		frames := framesOf(t, wire)
		end := firstFrame(t, frames, frChunkEnd)
		other := sha256.Sum256([]byte("other bytes"))
		payload := marshalChunkEnd(0, uint64(len(data)), other[:])
		var b strings.Builder
		_ = writeFrame(&b, frChunkEnd, payload, nil)
		forged := append(append(append([]byte(nil), wire[:end.off]...), b.String()...), wire[end.off+end.size:]...)
		dst, err := receiveBytes(t, forged)
		if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "pages-1.img") {
			t.Fatalf("manifest digest %q: err = %v, want ErrChecksum naming pages-1.img", manifestSum, err)
		}
		noSuchDir(t, dst)
	}
}

// TestReceiveReportsChunks: ReceiveOptions.Chunk is told of every chunk written, with the SHA-256 of the
// bytes at that place; over several streams the chunks of a big file tile it in pieces of the chunk size,
// and every other file comes as one chunk.
func TestReceiveReportsChunks(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := sampleTree(20 << 20)
	writeTree(t, src, files)
	m, err := ListManifest(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	const n, chunk = 3, 4 << 20
	ws := make([]io.Writer, n)
	rs := make([]io.Reader, n)
	pws := make([]*io.PipeWriter, n)
	for i := range n {
		pr, pw := io.Pipe()
		ws[i], rs[i], pws[i] = pw, pr, pw
	}
	go func() {
		_, err := SendParallel(ctx, ws, src, m, SendOptions{ChunkSize: chunk})
		for _, pw := range pws {
			pw.CloseWithError(err)
		}
	}()
	var mu sync.Mutex
	got := map[string][]ChunkSum{}
	dst := filepath.Join(t.TempDir(), "out")
	if _, _, err := ReceiveParallel(ctx, rs, dst, ReceiveOptions{Chunk: func(c ChunkSum) {
		mu.Lock()
		defer mu.Unlock()
		got[c.Path] = append(got[c.Path], c)
	}}); err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		cs := got[p]
		sort.Slice(cs, func(i, j int) bool { return cs[i].Offset < cs[j].Offset })
		want := 1
		if len(data) > chunk {
			want = (len(data) + chunk - 1) / chunk
		}
		if len(cs) != want {
			t.Fatalf("%s (%d bytes): %d chunks reported, want %d", p, len(data), len(cs), want)
		}
		var at int64
		for _, c := range cs {
			if c.Offset != at || c.SHA256 != sha256.Sum256(data[c.Offset:c.Offset+c.Length]) {
				t.Fatalf("%s: chunk at %d (%d bytes) reported at %d or with a wrong sum", p, at, c.Length, c.Offset)
			}
			at += c.Length
		}
		if at != int64(len(data)) {
			t.Fatalf("%s: chunks cover %d of %d bytes", p, at, len(data))
		}
	}
}
