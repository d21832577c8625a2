package criu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// CRIU's images (the ones read here): two magic numbers (IMG_COMMON, then the image's own), then entries, each a
// protobuf message after its 4-byte little-endian length. The messages are decoded field by field with
// protowire: only a few fields of a few images are needed, and go-criu's generated types predate some of
// them (pagemap_entry's nr_pages).
const (
	imgCommonMagic = 0x54564319
	pstreeMagic    = 0x50273030
	coreMagic      = 0x55053847
	mmMagic        = 0x57492820
	pagemapMagic   = 0x56084025

	// maxImageMsg bounds one entry (a core entry with its registers is a few KiB; an mm entry lists every
	// VMA), so that a damaged image fails with an error instead of allocating without end.
	maxImageMsg = 16 << 20
	// maxImageEntries bounds the entries of one image.
	maxImageEntries = 1 << 20
)

// ErrBadImage is returned for a CRIU image that is not what its name says or is damaged.
var ErrBadImage = errors.New("not a valid CRIU image")

// readImage returns the messages of the image at path, which must carry magic.
func readImage(path string, magic uint32) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	msgs, err := readImageFrom(f, magic)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return msgs, nil
}

func readImageFrom(r io.Reader, magic uint32) ([][]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadImage, err)
	}
	if binary.LittleEndian.Uint32(hdr[:4]) != imgCommonMagic || binary.LittleEndian.Uint32(hdr[4:]) != magic {
		return nil, fmt.Errorf("%w: magic %x, want %x", ErrBadImage, hdr, magic)
	}
	var msgs [][]byte
	for {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return msgs, nil
			}
			return nil, fmt.Errorf("%w: %v", ErrBadImage, err)
		}
		size := binary.LittleEndian.Uint32(n[:])
		if size > maxImageMsg {
			return nil, fmt.Errorf("%w: an entry of %d bytes", ErrBadImage, size)
		}
		if len(msgs) == maxImageEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadImage, maxImageEntries)
		}
		m := make([]byte, size)
		if _, err := io.ReadFull(r, m); err != nil {
			return nil, fmt.Errorf("%w: truncated entry: %v", ErrBadImage, err)
		}
		msgs = append(msgs, m)
	}
}

// protoField is one field of a message: its number, and its value (a varint's, or a fixed64's) or bytes
// (length-delimited).
type protoField struct {
	num   protowire.Number
	value uint64
	bytes []byte
}

// protoFields decodes the top-level fields of message b, in order (repeated fields appear once each time).
func protoFields(b []byte) ([]protoField, error) {
	var out []protoField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", ErrBadImage, protowire.ParseError(n))
		}
		b = b[n:]
		f := protoField{num: num}
		switch typ {
		case protowire.VarintType:
			f.value, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			f.value, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.value = uint64(v)
		case protowire.BytesType:
			f.bytes, n = protowire.ConsumeBytes(b)
		default:
			return nil, fmt.Errorf("%w: field %d of wire type %d", ErrBadImage, num, typ)
		}
		if n < 0 {
			return nil, fmt.Errorf("%w: field %d: %v", ErrBadImage, num, protowire.ParseError(n))
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

// field returns the last occurrence of field num in fs (as protobuf does for a non-repeated field).
func field(fs []protoField, num protowire.Number) (protoField, bool) {
	for i := len(fs) - 1; i >= 0; i-- {
		if fs[i].num == num {
			return fs[i], true
		}
	}
	return protoField{}, false
}

// uint32s returns the values of repeated uint32 field num, packed or not.
func uint32s(fs []protoField, num protowire.Number) ([]uint32, error) {
	var out []uint32
	for _, f := range fs {
		if f.num != num {
			continue
		}
		if f.bytes == nil {
			out = append(out, uint32(f.value))
			continue
		}
		b := f.bytes
		for len(b) > 0 {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("%w: packed field %d: %v", ErrBadImage, num, protowire.ParseError(n))
			}
			out = append(out, uint32(v))
			b = b[n:]
		}
	}
	return out, nil
}
