package stream

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
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
