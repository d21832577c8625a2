package stream

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// outStream is one stream of a send: a producer goroutine reads files into
// blocks, the compression workers fill them, and runStream writes them in
// order. order bounds the blocks in flight to opts.Depth.
type outStream struct {
	s      *sender
	idx    int
	order  chan *block
	perr   error // producer's error, readable once order is closed
	chunks uint64
	raw    uint64
}

// runStream sends one complete stream on w.
func (s *sender) runStream(ctx context.Context, w io.Writer, idx int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := &outStream{s: s, idx: idx, order: make(chan *block, s.opts.Depth)}
	bw := bufio.NewWriterSize(countingWriter{w, &s.tr.wire}, 64<<10)
	if err := o.writeStart(bw); err != nil {
		return err
	}
	s.streams.Add(1)
	go o.produce(ctx)
	err := o.writeLoop(ctx, bw)
	if err == nil {
		err = o.perr
	}
	if err == nil {
		err = o.writeControl(bw, frTrailer, marshalTrailer(o.chunks, o.raw))
		if err == nil {
			err = flush(bw)
		}
		return err
	}
	cancel()
	if !isWriteError(err) {
		o.abort(bw, err)
	}
	return err
}

// writeStart writes the header, the stream frame and the manifest frame.
func (o *outStream) writeStart(bw *bufio.Writer) error {
	info := o.s.info
	info.Index = uint16(o.idx)
	if err := writeHeader(bw); err != nil {
		return writeError{err}
	}
	if err := o.writeControl(bw, frStream, info.marshal()); err != nil {
		return err
	}
	if err := o.writeControl(bw, frManifest, o.s.manifest); err != nil {
		return err
	}
	return flush(bw)
}

func (o *outStream) writeControl(bw *bufio.Writer, t byte, p []byte) error {
	if err := writeFrame(bw, t, p, nil); err != nil {
		return writeError{err}
	}
	return nil
}

func flush(bw *bufio.Writer) error {
	if err := bw.Flush(); err != nil {
		return writeError{err}
	}
	return nil
}

// abort tells the receiver why the stream stops, best effort.
func (o *outStream) abort(bw *bufio.Writer, cause error) {
	msg := fmt.Sprintf("stream %d: %v", o.idx, cause)
	if len(msg) > maxAbortLen {
		msg = msg[:maxAbortLen]
	}
	if writeFrame(bw, frAbort, []byte(msg), nil) == nil {
		_ = bw.Flush()
	}
}

// writeLoop writes blocks in order until the producer closes order.
func (o *outStream) writeLoop(ctx context.Context, bw *bufio.Writer) error {
	for {
		var b *block
		var ok bool
		select {
		case b, ok = <-o.order:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-b.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := o.writeBlock(bw, b); err != nil {
			return err
		}
		if len(o.order) == 0 {
			if err := flush(bw); err != nil {
				return err
			}
		}
	}
}

// writeBlock writes one finished block and accounts for it.
func (o *outStream) writeBlock(bw *bufio.Writer, b *block) error {
	defer o.s.putBlock(b)
	var err error
	switch b.typ {
	case frZstd:
		err = writeFrame(bw, frZstd, zstdPrefix(len(b.payload)), *b.out)
	default:
		err = writeFrame(bw, b.typ, b.payload, nil)
	}
	if err != nil {
		return writeError{err}
	}
	switch b.typ {
	case frZstd, frData:
		o.raw += uint64(len(b.payload))
		o.s.tr.raw.Add(int64(len(b.payload)))
	case frChunk:
		o.chunks++
		o.s.tr.setFile(o.s.m.Entries[b.file].Path)
	case frChunkEnd:
		if o.s.plan.chunkSent(b.file) {
			o.s.tr.files.Add(1)
		}
	}
	return nil
}

// produce reads the chunks this stream takes from the plan into blocks.
func (o *outStream) produce(ctx context.Context) {
	defer o.s.streams.Done()
	defer close(o.order)
	for {
		c, ok := o.s.plan.take()
		if !ok {
			return
		}
		if err := o.produceChunk(ctx, c); err != nil {
			o.perr = err
			return
		}
	}
}

// produceChunk queues a chunk frame, its data blocks and its end frame. The
// last chunk of a file reads one byte past the manifest's size so that a file
// that grew is noticed by both sides.
func (o *outStream) produceChunk(ctx context.Context, c chunkHdr) error {
	e := o.s.m.Entries[c.File]
	f, err := o.s.root.Open(e.Path)
	if err != nil {
		return fmt.Errorf("send %s: %w", e.Path, err)
	}
	defer f.Close()
	if err := o.push(ctx, &block{typ: frChunk, payload: c.marshal(), done: closedChan, file: int(c.File)}); err != nil {
		return err
	}
	want := int64(c.Length)
	limit := want
	if int64(c.Offset)+want == e.Size {
		limit++
	}
	h := sha256.New()
	n, err := o.produceData(ctx, io.NewSectionReader(f, int64(c.Offset), limit), int(c.File), h)
	if err != nil {
		return fmt.Errorf("send %s: %w", e.Path, err)
	}
	end := &block{typ: frChunkEnd, payload: marshalChunkEnd(c.File, uint64(n), h.Sum(nil)), done: closedChan, file: int(c.File)}
	if err := o.push(ctx, end); err != nil {
		return err
	}
	if n != want {
		return sizeSendErr(e, int64(c.Offset), want, n)
	}
	return nil
}

func sizeSendErr(e Entry, off, want, got int64) error {
	if got > want {
		return fmt.Errorf("%w: %s changed on the source since its manifest was built: it has more than the manifest's %d bytes; rebuild the manifest and retry",
			ErrSize, e.Path, e.Size)
	}
	return fmt.Errorf("%w: %s changed on the source since its manifest was built: manifest says %d bytes, file ends at %d; rebuild the manifest and retry",
		ErrSize, e.Path, e.Size, off+got)
}

// produceData queues data blocks for everything r yields and returns the count.
func (o *outStream) produceData(ctx context.Context, r io.Reader, file int, h hash.Hash) (int64, error) {
	var total int64
	for {
		buf := o.s.bufs.get()
		n, err := io.ReadFull(r, (*buf)[:o.s.opts.FrameSize])
		if n == 0 {
			o.s.bufs.put(buf)
		} else {
			total += int64(n)
			h.Write((*buf)[:n])
			if perr := o.pushData(ctx, buf, n, file); perr != nil {
				return total, perr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// pushData queues one data block for writing and for compression.
func (o *outStream) pushData(ctx context.Context, buf *[]byte, n, file int) error {
	b := &block{typ: frData, payload: (*buf)[:n], raw: buf, file: file, done: closedChan}
	if o.s.enc != nil {
		b.done = make(chan struct{})
	}
	if err := o.push(ctx, b); err != nil {
		return err
	}
	if o.s.enc == nil {
		return nil
	}
	select {
	case o.s.jobs <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *outStream) push(ctx context.Context, b *block) error {
	select {
	case o.order <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
