package stripe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// testData is half text-like, half random, like a memory image.
func testData(size int) []byte {
	b := make([]byte, size)
	text := []byte(strings.Repeat("line 0001: the quick brown fox jumps over the lazy dog\n", 64))
	for i := 0; i < size/2; i += len(text) {
		copy(b[i:min(size/2, i+len(text))], text)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := size / 2; i < size; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// choppy returns reads of random sizes, like a socket.
type choppy struct {
	r   io.Reader
	rnd *rand.Rand
}

func (c *choppy) Read(p []byte) (int, error) {
	n := 1 + c.rnd.IntN(min(len(p), 300<<10))
	return c.r.Read(p[:n])
}

// lanes makes n pipes; the writers' ends go to the sender, the readers' to the receiver.
func lanes(n int) ([]io.Writer, []io.Reader, func()) {
	ws, rs := make([]io.Writer, n), make([]io.Reader, n)
	var closers []io.Closer
	for i := range n {
		pr, pw := io.Pipe()
		ws[i], rs[i] = pw, pr
		closers = append(closers, pr, pw)
	}
	return ws, rs, func() {
		for _, c := range closers {
			c.Close()
		}
	}
}

func closeWriters(ws []io.Writer) {
	for _, w := range ws {
		w.(io.Closer).Close()
	}
}

type result struct {
	sum Sum
	err error
}

func transfer(t *testing.T, data []byte, n int, opts Options, tamperLane func(int, io.Reader) io.Reader) (Sum, Sum, []byte, error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, rs, closeAll := lanes(n)
	defer closeAll()
	if tamperLane != nil {
		for i := range rs {
			rs[i] = tamperLane(i, rs[i])
		}
	}
	var out bytes.Buffer
	got := make(chan result, 1)
	go func() {
		s, err := Receive(ctx, rs, &out, opts)
		if err != nil {
			closeAll() // as a caller does: unblocks the sender
		}
		got <- result{s, err}
	}()
	src := &choppy{r: bytes.NewReader(data), rnd: rand.New(rand.NewPCG(3, uint64(n)))}
	ss, serr := Send(ctx, src, ws, opts)
	if serr == nil {
		closeWriters(ws)
	} else {
		closeAll()
	}
	r := <-got
	return ss, r.sum, out.Bytes(), serr, r.err
}

func TestRoundTrip(t *testing.T) {
	data := testData(9<<20 + 12345)
	for _, tc := range []struct {
		lanes    int
		compress bool
		frame    int
		depth    int
	}{
		{1, false, 0, 0}, {1, true, 0, 0}, {2, true, 0, 1}, {4, true, 0, 0}, {4, false, 64 << 10, 1}, {7, true, 100 << 10, 2},
	} {
		t.Run(fmt.Sprintf("%dlanes/zstd=%v/frame=%d", tc.lanes, tc.compress, tc.frame), func(t *testing.T) {
			opts := Options{Compress: tc.compress, FrameSize: tc.frame, Depth: tc.depth}
			ss, rs, out, serr, rerr := transfer(t, data, tc.lanes, opts, nil)
			if serr != nil || rerr != nil {
				t.Fatalf("send: %v, receive: %v", serr, rerr)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("received %d bytes that differ from the %d sent", len(out), len(data))
			}
			if ss.Digest == "" || rs.Digest != ss.Digest || ss.Bytes != int64(len(data)) || rs.Bytes != ss.Bytes {
				t.Fatalf("sums: sent %+v, received %+v", ss, rs)
			}
			if ss.Wire != rs.Wire {
				t.Fatalf("wire bytes: sent %d, received %d", ss.Wire, rs.Wire)
			}
			if tc.compress && ss.Wire >= int64(len(data)) {
				t.Fatalf("compressed stream is %d bytes for %d", ss.Wire, len(data))
			}
		})
	}
}

func TestEmptyStream(t *testing.T) {
	ss, rs, out, serr, rerr := transfer(t, nil, 3, Options{}, nil)
	if serr != nil || rerr != nil || len(out) != 0 || ss.Digest != rs.Digest || rs.Bytes != 0 {
		t.Fatalf("send %+v %v, receive %+v %v, %d bytes", ss, serr, rs, rerr, len(out))
	}
}

// TestRequestReply: a short message is forwarded at once, not held back waiting for a full frame, so a
// protocol that waits for replies (CRIU's page server) goes on.
func TestRequestReply(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, rs, closeAll := lanes(3)
	defer closeAll()
	srcR, srcW := io.Pipe()
	dstR, dstW := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		_, err := Send(ctx, srcR, ws, Options{Compress: true})
		closeWriters(ws)
		sent <- err
	}()
	recv := make(chan error, 1)
	go func() {
		_, err := Receive(ctx, rs, dstW, Options{})
		dstW.Close()
		recv <- err
	}()
	buf := make([]byte, 64)
	for i := range 20 {
		msg := fmt.Sprintf("request %d", i)
		if _, err := srcW.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := io.ReadFull(dstR, buf[:len(msg)])
		if err != nil || string(buf[:n]) != msg {
			t.Fatalf("message %d: %q, %v", i, buf[:n], err)
		}
	}
	srcW.Close()
	if _, err := io.ReadAll(dstR); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := <-recv; err != nil {
		t.Fatal(err)
	}
}

// flipper flips one byte of lane lane at offset at.
type flipper struct {
	r      io.Reader
	at, n  int64
	active bool
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if f.active && f.at >= f.n && f.at < f.n+int64(n) {
		p[f.at-f.n] ^= 0x20
	}
	f.n += int64(n)
	return n, err
}

func TestCorruptionIsRefused(t *testing.T) {
	data := testData(6 << 20)
	for _, tc := range []struct {
		name     string
		lane     int
		at       int64
		compress bool
	}{
		{"payload of a stored frame", 1, headerSize + 1000, false},
		{"payload of a compressed frame", 0, headerSize + 500, true},
		{"a header", 2, 3, false},
		{"a sequence number", 1, 23, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, _, rerr := transfer(t, data, 3, Options{Compress: tc.compress}, func(i int, r io.Reader) io.Reader {
				return &flipper{r: r, at: tc.at, active: i == tc.lane}
			})
			if !errors.Is(rerr, ErrCorrupt) {
				t.Fatalf("receive: %v, want ErrCorrupt", rerr)
			}
		})
	}
}

// TestTamperedFrameIsRefused: bytes changed after the sender took the frame's CRC32C (between reading and the
// wire) are refused by the receiver, naming the frame.
func TestTamperedFrameIsRefused(t *testing.T) {
	data := testData(3 << 20)
	opts := Options{Compress: true, Tamper: func(off int64, raw []byte) {
		if at := int64(1 << 20); at >= off && at < off+int64(len(raw)) {
			raw[at-off] ^= 0x5a
		}
	}}
	_, _, _, _, rerr := transfer(t, data, 2, opts, nil)
	if !errors.Is(rerr, ErrCorrupt) || !strings.Contains(rerr.Error(), "CRC32C") {
		t.Fatalf("receive: %v, want ErrCorrupt naming the frame's CRC32C", rerr)
	}
}

// TestDigestBindsOrderAndContent: the digest changes with any frame's position, length or content.
func TestDigestBindsOrderAndContent(t *testing.T) {
	base := func(d *digest) { d.add(0, 10, 1); d.add(1, 20, 2) }
	variants := map[string]func(d *digest){
		"swapped":     func(d *digest) { d.add(0, 20, 2); d.add(1, 10, 1) },
		"other crc":   func(d *digest) { d.add(0, 10, 1); d.add(1, 20, 3) },
		"other len":   func(d *digest) { d.add(0, 10, 1); d.add(1, 21, 2) },
		"one missing": func(d *digest) { d.add(0, 10, 1) },
		"renumbered":  func(d *digest) { d.add(0, 10, 1); d.add(2, 20, 2) },
	}
	a := newDigest()
	base(a)
	for name, v := range variants {
		b := newDigest()
		v(b)
		if a.String() == b.String() {
			t.Errorf("%s: same digest as the original stream", name)
		}
	}
}

func TestTruncatedLane(t *testing.T) {
	data := testData(4 << 20)
	_, _, _, _, rerr := transfer(t, data, 2, Options{}, func(i int, r io.Reader) io.Reader {
		if i == 1 {
			return io.LimitReader(r, 300<<10)
		}
		return r
	})
	if !errors.Is(rerr, ErrCorrupt) {
		t.Fatalf("receive: %v, want ErrCorrupt", rerr)
	}
}

func TestSwappedLanes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, rs, closeAll := lanes(2)
	defer closeAll()
	go func() {
		if _, err := Send(ctx, bytes.NewReader(testData(4<<20)), ws, Options{FrameSize: 64 << 10}); err == nil {
			closeWriters(ws)
		}
	}()
	_, err := Receive(ctx, []io.Reader{rs[1], rs[0]}, io.Discard, Options{})
	closeAll()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("receive: %v, want ErrCorrupt", err)
	}
}

// TestSlowReceiverBoundsTheSender: a stalled destination stops the sender after a bounded number of frames.
func TestSlowReceiverBoundsTheSender(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, rs, closeAll := lanes(2)
	defer closeAll()
	counted := &countReader{r: bytes.NewReader(testData(64 << 20))}
	go Send(ctx, counted, ws, Options{Depth: 2, Workers: 2})
	dstR, dstW := io.Pipe()
	go Receive(ctx, rs, dstW, Options{Depth: 2})
	io.CopyN(io.Discard, dstR, 1<<20)
	time.Sleep(300 * time.Millisecond)
	if n := counted.n.Load(); n > 20<<20 {
		t.Fatalf("the sender read %d bytes ahead of a stalled receiver", n)
	}
	closeAll()
	dstR.Close()
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{FrameSize: -1}, {FrameSize: MaxFrameSize + 1}, {Depth: 65}, {Workers: -2}} {
		if o.Validate() == nil {
			t.Errorf("%+v validated", o)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Send(context.Background(), bytes.NewReader(nil), nil, Options{}); err == nil {
		t.Fatal("Send with no lanes worked")
	}
}

func FuzzParseHeader(f *testing.F) {
	b := make([]byte, headerSize)
	header{kind: kindZstd, rawLen: 100, wireLen: 50, seq: 7}.put(b)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerSize {
			return
		}
		h, err := parseHeader(b[:headerSize], 0)
		if err != nil {
			return
		}
		if h.rawLen > MaxFrameSize || h.wireLen > MaxFrameSize {
			t.Fatalf("accepted %+v", h)
		}
		c := make([]byte, headerSize)
		h.put(c)
		if !bytes.Equal(c, b[:headerSize]) {
			t.Fatalf("header %x reads back as %x", b[:headerSize], c)
		}
	})
}
