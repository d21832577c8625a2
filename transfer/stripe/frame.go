package stripe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ErrCorrupt is wrapped by every error about bytes that arrived wrong.
var ErrCorrupt = errors.New("stripe: corrupt stream")

// Frame kinds.
const (
	kindRaw  = 1 // payload is the raw bytes
	kindZstd = 2 // payload is one zstd frame of the raw bytes
	kindEnd  = 3 // no payload; seq is the number of data frames sent
)

// headerSize is the size of a frame header: kind (1), reserved (3), raw length (4), wire length (4),
// CRC32C of the raw bytes (4), sequence number (8).
const headerSize = 24

// MaxFrameSize bounds the raw (and the wire) size of a frame that a receiver accepts.
const MaxFrameSize = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type header struct {
	kind    byte
	rawLen  uint32
	wireLen uint32
	crc     uint32
	seq     uint64
}

func (h header) put(b []byte) {
	b[0], b[1], b[2], b[3] = h.kind, 0, 0, 0
	binary.BigEndian.PutUint32(b[4:], h.rawLen)
	binary.BigEndian.PutUint32(b[8:], h.wireLen)
	binary.BigEndian.PutUint32(b[12:], h.crc)
	binary.BigEndian.PutUint64(b[16:], h.seq)
}

// readHeader reads and checks one frame header from lane.
func readHeader(r io.Reader, b []byte, lane int) (header, error) {
	if _, err := io.ReadFull(r, b[:headerSize]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return header{}, fmt.Errorf("%w: lane %d ended without an end frame", ErrCorrupt, lane)
		}
		return header{}, fmt.Errorf("lane %d: %w", lane, err)
	}
	return parseHeader(b[:headerSize], lane)
}

func parseHeader(b []byte, lane int) (header, error) {
	h := header{kind: b[0], rawLen: binary.BigEndian.Uint32(b[4:]), wireLen: binary.BigEndian.Uint32(b[8:]),
		crc: binary.BigEndian.Uint32(b[12:]), seq: binary.BigEndian.Uint64(b[16:])}
	if b[1]|b[2]|b[3] != 0 {
		return h, fmt.Errorf("%w: lane %d: bad frame header", ErrCorrupt, lane)
	}
	switch h.kind {
	case kindRaw:
		if h.rawLen != h.wireLen || h.rawLen == 0 || h.rawLen > MaxFrameSize {
			return h, fmt.Errorf("%w: lane %d: frame %d: bad lengths %d/%d", ErrCorrupt, lane, h.seq, h.rawLen, h.wireLen)
		}
	case kindZstd:
		if h.rawLen == 0 || h.rawLen > MaxFrameSize || h.wireLen == 0 || h.wireLen > MaxFrameSize {
			return h, fmt.Errorf("%w: lane %d: frame %d: bad lengths %d/%d", ErrCorrupt, lane, h.seq, h.rawLen, h.wireLen)
		}
	case kindEnd:
		if h.rawLen != 0 || h.wireLen != 0 {
			return h, fmt.Errorf("%w: lane %d: bad end frame", ErrCorrupt, lane)
		}
	default:
		return h, fmt.Errorf("%w: lane %d: unknown frame kind %d", ErrCorrupt, lane, h.kind)
	}
	return h, nil
}
