package stream

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Wire format, version 2 (all integers big-endian; the frames' payloads are in doc.go):
//
//	header  = "FERRY-STREAM" version:u16
//	frame   = type:u8 length:u32 payload[length] crc:u32
//	stream  = header frStream frManifest { frChunk { frData | frZstd } frChunkEnd } frTrailer
//
// A reader of another version refuses the stream at its header, saying to run one version on both nodes.
//
// crc is the CRC32C (Castagnoli) of type, length and payload, so a flipped bit
// in any of them is caught at the frame where it happened. A sender that fails
// may end the stream with frAbort instead of frTrailer.
const (
	// WireVersion is the stream format this package writes and accepts.
	WireVersion = 2
	magic       = "FERRY-STREAM"
	headerLen   = len(magic) + 2
	frameHdrLen = 5
	frameCRCLen = 4

	minFrameSize     = 4 << 10
	hardMaxFrameSize = 16 << 20
	maxAbortLen      = 4096
	minChunkSize     = 64 << 10
)

// Frame types.
const (
	// frStream: transfer id [16], index u16, count u16, chunk size u64,
	// sha256 of the manifest frame's payload [32].
	frStream byte = 0x01
	// frManifest: the manifest JSON (Manifest.Encode).
	frManifest byte = 0x02
	// frChunk: file index u32, offset u64, length u64. Data frames follow.
	frChunk byte = 0x03
	// frData: raw file bytes, stored because compression did not pay.
	frData byte = 0x04
	// frZstd: raw length u32, then one zstd frame that decodes to it.
	frZstd byte = 0x05
	// frChunkEnd: file index u32, bytes sent u64, SHA-256 of the chunk's bytes [32].
	frChunkEnd byte = 0x06
	// frTrailer: chunks sent u64, raw bytes sent u64. Last frame of a stream.
	frTrailer byte = 0x07
	// frAbort: UTF-8 reason; the sender gave up.
	frAbort byte = 0x08
)

const (
	streamPayloadLen   = 16 + 2 + 2 + 8 + 32
	chunkPayloadLen    = 4 + 8 + 8
	chunkEndPayloadLen = 4 + 8 + sha256.Size
	trailerPayloadLen  = 8 + 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameName names a frame type for error messages.
func frameName(t byte) string {
	names := map[byte]string{frStream: "stream", frManifest: "manifest", frChunk: "chunk",
		frData: "data", frZstd: "zstd data", frChunkEnd: "chunk end", frTrailer: "trailer", frAbort: "abort"}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("unknown(%#02x)", t)
}

// payloadBounds returns the smallest and largest payload a frame type may carry.
func payloadBounds(t byte, lim Limits) (lo, hi int, ok bool) {
	switch t {
	case frStream:
		return streamPayloadLen, streamPayloadLen, true
	case frManifest:
		return 2, lim.MaxManifestBytes, true
	case frChunk:
		return chunkPayloadLen, chunkPayloadLen, true
	case frData:
		return 1, lim.MaxFrameSize, true
	case frZstd:
		return 5, lim.MaxFrameSize, true
	case frChunkEnd:
		return chunkEndPayloadLen, chunkEndPayloadLen, true
	case frTrailer:
		return trailerPayloadLen, trailerPayloadLen, true
	case frAbort:
		return 0, maxAbortLen, true
	}
	return 0, 0, false
}

// writeHeader writes the stream header.
func writeHeader(w io.Writer) error {
	var h [headerLen]byte
	copy(h[:], magic)
	binary.BigEndian.PutUint16(h[len(magic):], WireVersion)
	_, err := w.Write(h[:])
	return err
}

// readHeader reads and checks the stream header.
func readHeader(r io.Reader) error {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return truncErr(err, "stream header")
	}
	if string(h[:len(magic)]) != magic {
		return fmt.Errorf("%w: bad magic %q; the peer is not sending a Ferry stream", ErrCorrupt, h[:len(magic)])
	}
	if v := binary.BigEndian.Uint16(h[len(magic):]); v != WireVersion {
		return fmt.Errorf("%w: stream version %d, this build reads version %d; run the same Ferry version on both nodes",
			ErrCorrupt, v, WireVersion)
	}
	return nil
}

// writeFrame writes one frame whose payload is the concatenation of a and b
// (b may be nil), so a data prefix needs no copy.
func writeFrame(w io.Writer, t byte, a, b []byte) error {
	var hdr [frameHdrLen]byte
	hdr[0] = t
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(a)+len(b)))
	crc := crc32.Update(0, castagnoli, hdr[:])
	crc = crc32.Update(crc, castagnoli, a)
	crc = crc32.Update(crc, castagnoli, b)
	var tail [frameCRCLen]byte
	binary.BigEndian.PutUint32(tail[:], crc)
	for _, p := range [][]byte{hdr[:], a, b, tail[:]} {
		if len(p) == 0 {
			continue
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// readFrame reads one frame and checks its length bound and CRC. The payload
// is read into buf when it fits (the result aliases buf), else a new slice.
// An end of input is reported as ErrTruncated, anything malformed as ErrCorrupt.
func readFrame(r io.Reader, lim Limits, buf []byte) (byte, []byte, error) {
	var hdr [frameHdrLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, truncErr(err, "frame header")
	}
	t, n := hdr[0], binary.BigEndian.Uint32(hdr[1:])
	lo, hi, ok := payloadBounds(t, lim)
	if !ok {
		return 0, nil, fmt.Errorf("%w: unknown frame type %#02x", ErrCorrupt, t)
	}
	if int64(n) < int64(lo) || int64(n) > int64(hi) {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes, allowed %d..%d", ErrCorrupt, frameName(t), n, lo, hi)
	}
	if cap(buf) < int(n)+frameCRCLen {
		buf = make([]byte, int(n)+frameCRCLen)
	}
	buf = buf[:int(n)+frameCRCLen]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, truncErr(err, frameName(t)+" frame")
	}
	payload := buf[:n]
	crc := crc32.Update(crc32.Update(0, castagnoli, hdr[:]), castagnoli, payload)
	if got := binary.BigEndian.Uint32(buf[n:]); got != crc {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes fails its CRC32C (computed %08x, frame says %08x); the stream was damaged in transit, retry the transfer",
			ErrCorrupt, frameName(t), n, crc, got)
	}
	return t, payload, nil
}

// truncErr maps an end of input while reading what to ErrTruncated.
func truncErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: input ended inside the %s; the sender stopped or the connection dropped, retry the transfer", ErrTruncated, what)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// countingWriter counts bytes written through it.
type countingWriter struct {
	w io.Writer
	n *int64Counter
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingReader counts bytes read through it.
type countingReader struct {
	r io.Reader
	n *int64Counter
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// newFrameBufWriter buffers small frames so a channel sees few large writes.
func newFrameBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 64<<10) }

// Fixed-size payload codecs.

type streamInfo struct {
	Transfer    [16]byte
	Index       uint16
	Count       uint16
	ChunkSize   uint64
	ManifestSum [32]byte
}

func (s streamInfo) marshal() []byte {
	b := make([]byte, streamPayloadLen)
	copy(b, s.Transfer[:])
	binary.BigEndian.PutUint16(b[16:], s.Index)
	binary.BigEndian.PutUint16(b[18:], s.Count)
	binary.BigEndian.PutUint64(b[20:], s.ChunkSize)
	copy(b[28:], s.ManifestSum[:])
	return b
}

func unmarshalStreamInfo(b []byte) streamInfo {
	var s streamInfo
	copy(s.Transfer[:], b)
	s.Index = binary.BigEndian.Uint16(b[16:])
	s.Count = binary.BigEndian.Uint16(b[18:])
	s.ChunkSize = binary.BigEndian.Uint64(b[20:])
	copy(s.ManifestSum[:], b[28:])
	return s
}

type chunkHdr struct {
	File   uint32
	Offset uint64
	Length uint64
}

func (c chunkHdr) marshal() []byte {
	b := make([]byte, chunkPayloadLen)
	binary.BigEndian.PutUint32(b, c.File)
	binary.BigEndian.PutUint64(b[4:], c.Offset)
	binary.BigEndian.PutUint64(b[12:], c.Length)
	return b
}

func unmarshalChunk(b []byte) chunkHdr {
	return chunkHdr{File: binary.BigEndian.Uint32(b), Offset: binary.BigEndian.Uint64(b[4:]), Length: binary.BigEndian.Uint64(b[12:])}
}

func marshalChunkEnd(file uint32, n uint64, sum []byte) []byte {
	b := make([]byte, chunkEndPayloadLen)
	binary.BigEndian.PutUint32(b, file)
	binary.BigEndian.PutUint64(b[4:], n)
	copy(b[12:], sum)
	return b
}

func marshalTrailer(chunks, raw uint64) []byte {
	b := make([]byte, trailerPayloadLen)
	binary.BigEndian.PutUint64(b, chunks)
	binary.BigEndian.PutUint64(b[8:], raw)
	return b
}
