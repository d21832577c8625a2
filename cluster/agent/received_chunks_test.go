package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/transfer/stream"
)

func TestReceivedChunksSums(t *testing.T) {
	sum := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	hexOf := func(s string) string { b := sum(s); return hex.EncodeToString(b[:]) }
	m := &stream.Manifest{Entries: []stream.Entry{
		{Path: "images/pages-1.img", Size: 10}, {Path: "images/core-1.img", Size: 3}, {Path: "gap.img", Size: 10},
		{Path: "short.img", Size: 10}, {Path: "never.img", Size: 1}, {Path: "empty.img", Size: 0},
	}}
	var r receivedChunks
	var wg sync.WaitGroup
	for _, c := range []stream.ChunkSum{
		{Path: "images/pages-1.img", Offset: 8, Length: 2, SHA256: sum("c")}, // out of order, from several streams
		{Path: "images/pages-1.img", Offset: 0, Length: 4, SHA256: sum("a")},
		{Path: "images/pages-1.img", Offset: 4, Length: 4, SHA256: sum("b")},
		{Path: "images/core-1.img", Offset: 0, Length: 3, SHA256: sum("core")},
		{Path: "gap.img", Offset: 0, Length: 4, SHA256: sum("a")},
		{Path: "gap.img", Offset: 8, Length: 2, SHA256: sum("c")},
		{Path: "short.img", Offset: 0, Length: 4, SHA256: sum("a")},
		{Path: "empty.img", Offset: 0, Length: 0, SHA256: sum("")},
	} {
		wg.Add(1)
		go func() { defer wg.Done(); r.add(c) }()
	}
	wg.Wait()
	got := r.sums(m)
	want := map[string]checkpoint.Sum{
		"images/pages-1.img": {Size: 10, ChunkSize: 4, Chunks: []string{hexOf("a"), hexOf("b"), hexOf("c")}},
		"images/core-1.img":  {Size: 3, SHA256: hexOf("core"), Chunks: []string{hexOf("core")}},
		"empty.img":          {Size: 0, SHA256: hexOf(""), Chunks: []string{hexOf("")}},
	}
	if len(got) != len(want) {
		t.Fatalf("sums for %d files, want %d (files whose chunks do not tile them are left out): %+v", len(got), len(want), got)
	}
	for p, w := range want {
		g := got[p]
		if g.Size != w.Size || g.SHA256 != w.SHA256 || g.ChunkSize != w.ChunkSize || len(g.Chunks) != len(w.Chunks) {
			t.Fatalf("%s: %+v, want %+v", p, g, w)
		}
		for i := range w.Chunks {
			if g.Chunks[i] != w.Chunks[i] {
				t.Fatalf("%s: chunk %d is %s, want %s", p, i, g.Chunks[i], w.Chunks[i])
			}
		}
	}
}
