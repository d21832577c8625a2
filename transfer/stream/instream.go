package stream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"strconv"
)

// rframe is one frame handed from a stream's reader goroutine to its receiver.
type rframe struct {
	typ     byte
	payload []byte
	buf     *[]byte
	err     error
}

// inStream is the receiving state machine of one stream.
type inStream struct {
	a      *assembly
	frames chan rframe
	pool   *bufList
	dec    []byte
	chunks uint64
	raw    uint64
	// current chunk, when cur != nil
	cur   *fileState
	chunk chunkHdr
	got   uint64
	hash  hash.Hash
}

// receiveStream reads one stream to its trailer, handing chunks to the assembly.
func (a *assembly) receiveStream(ctx context.Context, r io.Reader, idx int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Frame buffers: two queued in frames, one being handled, one being read.
	pool := newBufList(4, 0, DefaultFrameSize+frameCRCLen)
	s := &inStream{a: a, frames: make(chan rframe, 2), pool: pool}
	go s.readFrames(ctx, bufio.NewReaderSize(countingReader{r, &a.tr.wire}, 64<<10))
	err := s.run(ctx)
	if s.cur != nil {
		s.a.abandon(s.cur)
	}
	if err != nil && idx > 0 {
		return fmt.Errorf("stream %d: %w", idx, err)
	}
	return err
}

// readFrames reads the header and then frames until the trailer, an abort,
// an error, or ctx is done. It is the only reader of r.
func (s *inStream) readFrames(ctx context.Context, r io.Reader) {
	defer close(s.frames)
	if err := readHeader(r); err != nil {
		s.send(ctx, rframe{err: err})
		return
	}
	for {
		buf := s.pool.get()
		t, p, err := readFrame(r, s.a.lim, *buf)
		if cap(p) > cap(*buf) && cap(p) <= DefaultMaxFrameSize+frameCRCLen {
			*buf = p[:0]
		}
		if !s.send(ctx, rframe{typ: t, payload: p, buf: buf, err: err}) || err != nil || t == frTrailer || t == frAbort {
			return
		}
	}
}

func (s *inStream) send(ctx context.Context, f rframe) bool {
	select {
	case s.frames <- f:
		return true
	case <-ctx.Done():
		return false
	}
}

// next returns the next frame, checking ctx first.
func (s *inStream) next(ctx context.Context) (rframe, error) {
	select {
	case f, ok := <-s.frames:
		if !ok {
			return rframe{}, fmt.Errorf("%w: stream ended before its trailer", ErrTruncated)
		}
		return f, f.err
	case <-ctx.Done():
		return rframe{}, ctx.Err()
	}
}

// run drives the protocol: stream, manifest, then chunks until the trailer.
func (s *inStream) run(ctx context.Context) error {
	for i, want := range []byte{frStream, frManifest} {
		f, err := s.next(ctx)
		if err != nil {
			return err
		}
		if f.typ != want {
			return unexpected(f.typ, "at the start of the stream")
		}
		if i == 0 {
			err = s.a.join(unmarshalStreamInfo(f.payload))
		} else {
			err = s.a.setManifest(f.payload)
		}
		if err != nil {
			return err
		}
	}
	for {
		f, err := s.next(ctx)
		if err != nil {
			return err
		}
		done, err := s.handle(f)
		s.pool.put(f.buf)
		if err != nil || done {
			return err
		}
	}
}

func unexpected(t byte, where string) error {
	return fmt.Errorf("%w: unexpected %s frame %s", ErrCorrupt, frameName(t), where)
}

// handle processes one frame after the manifest; done is set by the trailer.
func (s *inStream) handle(f rframe) (done bool, err error) {
	if f.typ == frAbort {
		return false, fmt.Errorf("%w: %s", ErrAborted, strconv.Quote(string(f.payload)))
	}
	if s.cur == nil {
		switch f.typ {
		case frChunk:
			return false, s.beginChunk(unmarshalChunk(f.payload))
		case frTrailer:
			return true, s.trailer(f.payload)
		}
		return false, unexpected(f.typ, "between chunks")
	}
	switch f.typ {
	case frData:
		return false, s.write(f.payload)
	case frZstd:
		return false, s.writeZstd(f.payload)
	case frChunkEnd:
		return false, s.endChunk(f.payload)
	}
	return false, unexpected(f.typ, "inside a chunk of "+s.cur.e.Path)
}

func (s *inStream) beginChunk(c chunkHdr) error {
	fsx, err := s.a.beginChunk(c)
	if err != nil {
		return err
	}
	s.cur, s.chunk, s.got, s.hash = fsx, c, 0, sha256.New()
	s.chunks++
	return nil
}

// writeZstd decodes a frZstd payload, refusing output beyond its stated length.
func (s *inStream) writeZstd(p []byte) error {
	n := binary.BigEndian.Uint32(p)
	if n == 0 || int64(n) > int64(s.a.lim.MaxFrameSize) {
		return fmt.Errorf("%w: zstd frame of %s claims %d raw bytes, limit %d", ErrCorrupt, s.cur.e.Path, n, s.a.lim.MaxFrameSize)
	}
	if cap(s.dec) < int(n) {
		s.dec = make([]byte, 0, n)
	}
	out, err := s.a.dec.DecodeAll(p[4:], s.dec[:0:n])
	if err != nil || len(out) != int(n) {
		return fmt.Errorf("%w: zstd frame of %s does not decode to its %d bytes: %v", ErrCorrupt, s.cur.e.Path, n, err)
	}
	return s.write(out)
}

// write puts decoded bytes at their place in the staged file.
func (s *inStream) write(p []byte) error {
	if s.got+uint64(len(p)) > s.chunk.Length {
		return s.sizeErr(true)
	}
	if _, err := s.cur.f.WriteAt(p, int64(s.chunk.Offset+s.got)); err != nil {
		return fmt.Errorf("stage %s: %w", s.cur.e.Path, err)
	}
	s.hash.Write(p)
	s.got += uint64(len(p))
	s.raw += uint64(len(p))
	s.a.tr.raw.Add(int64(len(p)))
	return nil
}

func (s *inStream) sizeErr(more bool) error {
	e := s.cur.e
	if more {
		return fmt.Errorf("%w for %s: received more than the manifest's %d bytes; the file changed on the source after its manifest was built, rebuild it and retry",
			ErrSize, e.Path, e.Size)
	}
	return fmt.Errorf("%w for %s: manifest says %d bytes, received %d; the file changed on the source after its manifest was built, rebuild it and retry",
		ErrSize, e.Path, e.Size, s.chunk.Offset+s.got)
}

// endChunk checks the chunk's byte count and hands it to the assembly.
func (s *inStream) endChunk(p []byte) error {
	file, n := binary.BigEndian.Uint32(p), binary.BigEndian.Uint64(p[4:])
	if file != s.chunk.File || n != s.got {
		return fmt.Errorf("%w: chunk end of %s says file %d, %d bytes; received file %d, %d bytes",
			ErrCorrupt, s.cur.e.Path, file, n, s.chunk.File, s.got)
	}
	if s.got != s.chunk.Length {
		return s.sizeErr(false)
	}
	if sum := s.hash.Sum(nil); !bytes.Equal(sum, p[12:12+sha256.Size]) {
		return fmt.Errorf("%w for %s: the chunk at offset %d (%d bytes) hashes to %x here, the sender read %x; it was corrupted in transit or changed on the source, retry the transfer",
			ErrChecksum, s.cur.e.Path, s.chunk.Offset, s.got, sum, p[12:12+sha256.Size])
	}
	fsx := s.cur
	s.cur = nil
	if s.a.onChunk != nil {
		cs := ChunkSum{Path: fsx.e.Path, Offset: int64(s.chunk.Offset), Length: int64(s.got)}
		copy(cs.SHA256[:], p[12:12+sha256.Size])
		s.a.onChunk(cs)
	}
	var whole hash.Hash
	if s.chunk.Offset == 0 && int64(s.chunk.Length) == fsx.e.Size {
		whole = s.hash
	}
	return s.a.endChunk(fsx, whole)
}

// trailer checks the stream's own totals.
func (s *inStream) trailer(p []byte) error {
	chunks, raw := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
	if chunks != s.chunks || raw != s.raw {
		return fmt.Errorf("%w: trailer says %d chunks, %d bytes; received %d chunks, %d bytes", ErrCorrupt, chunks, raw, s.chunks, s.raw)
	}
	return nil
}
