package stream

import (
	"context"
	"path/filepath"
	"testing"
)

func TestRoundTripPipe(t *testing.T) {
	for _, c := range []Compression{CompressionAuto, CompressionNone, CompressionDefault} {
		t.Run(c.String(), func(t *testing.T) {
			ctx := context.Background()
			src, parent := t.TempDir(), t.TempDir()
			files := sampleTree(64 << 20)
			writeTree(t, src, files)
			m, err := BuildManifest(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(parent, "out")
			so := SendOptions{Compression: c}
			sst, rst, got, serr, rerr := pipeTransfer(ctx, src, dst, m, so, DefaultReceiveOptions())
			if serr != nil || rerr != nil {
				t.Fatalf("send: %v; receive: %v", serr, rerr)
			}
			sameTree(t, dst, files)
			if len(got.Entries) != len(files) {
				t.Errorf("manifest has %d entries, want %d", len(got.Entries), len(files))
			}
			if sst.RawBytes != m.TotalSize() || rst.RawBytes != m.TotalSize() || sst.WireBytes != rst.WireBytes {
				t.Errorf("stats: send %+v receive %+v total %d", sst, rst, m.TotalSize())
			}
			t.Logf("%s: raw %d wire %d ratio %.3f in %v", c, sst.RawBytes, sst.WireBytes, sst.Ratio(), sst.Duration)
			onlyEntries(t, parent, "out")
		})
	}
}
