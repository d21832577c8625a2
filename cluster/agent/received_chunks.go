package agent

import (
	"cmp"
	"encoding/hex"
	"slices"
	"sync"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/transfer/stream"
)

// receivedChunks gathers the sums of the chunks a stream wrote and checked (stream.ReceiveOptions.Chunk), to
// prove the received files against a checkpoint's manifest without reading them again. Safe for concurrent
// use.
type receivedChunks struct {
	mu sync.Mutex
	by map[string][]stream.ChunkSum
}

func (r *receivedChunks) add(c stream.ChunkSum) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[string][]stream.ChunkSum{}
	}
	r.by[c.Path] = append(r.by[c.Path], c)
}

// sums returns, for every file of the received manifest m, its size and the sums of its chunks in order
// (ChunkSize is the length of its first chunk; a file that came as one chunk has that chunk's sum as its
// whole sum too). A file whose chunks do not tile it, or that the manifest does not list, is left out, so
// that the check against the checkpoint's manifest fails on it.
func (r *receivedChunks) sums(m *stream.Manifest) map[string]checkpoint.Sum {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]checkpoint.Sum, len(m.Entries))
	for _, e := range m.Entries {
		cs := slices.Clone(r.by[e.Path])
		if len(cs) == 0 {
			continue
		}
		slices.SortFunc(cs, func(x, y stream.ChunkSum) int { return cmp.Compare(x.Offset, y.Offset) })
		s := checkpoint.Sum{Size: e.Size, ChunkSize: cs[0].Length}
		var at int64
		tiles := true
		for i, c := range cs {
			if c.Offset != at || (i < len(cs)-1 && c.Length != s.ChunkSize) {
				tiles = false
				break
			}
			at += c.Length
			s.Chunks = append(s.Chunks, hex.EncodeToString(c.SHA256[:]))
		}
		if !tiles || at != e.Size {
			continue
		}
		if len(cs) == 1 {
			s.SHA256, s.ChunkSize = s.Chunks[0], 0
		}
		out[e.Path] = s
	}
	return out
}
