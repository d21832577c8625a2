package stream

import (
	"bytes"
	"errors"
	"testing"
)

func encodeFrame(t byte, p []byte) []byte {
	var b bytes.Buffer
	_ = writeFrame(&b, t, p, nil)
	return b.Bytes()
}

func TestReadFrame(t *testing.T) {
	lim := Limits{MaxFrameSize: 64 << 10, MaxManifestBytes: 1 << 10}.withDefaults()
	good := encodeFrame(frData, []byte("hello"))
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x10; return b }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"ok", good, nil},
		{"empty input", nil, ErrTruncated},
		{"cut header", good[:3], ErrTruncated},
		{"cut payload", good[:7], ErrTruncated},
		{"cut crc", good[:len(good)-1], ErrTruncated},
		{"flipped type", flip(0), ErrCorrupt},
		{"shorter length", func() []byte { b := bytes.Clone(good); b[4] = 4; return b }(), ErrCorrupt},
		{"longer length", flip(4), ErrTruncated},
		{"flipped payload", flip(6), ErrCorrupt},
		{"flipped crc", flip(len(good) - 1), ErrCorrupt},
		{"unknown type", encodeFrame(0x7e, []byte("x")), ErrCorrupt},
		{"empty data frame", encodeFrame(frData, nil), ErrCorrupt},
		{"short chunk frame", encodeFrame(frChunk, make([]byte, 3)), ErrCorrupt},
		{"data above limit", encodeFrame(frData, make([]byte, 64<<10+1)), ErrCorrupt},
		{"manifest above limit", encodeFrame(frManifest, make([]byte, 2<<10)), ErrCorrupt},
		{"huge length", []byte{frData, 0xff, 0xff, 0xff, 0xff}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, p, err := readFrame(bytes.NewReader(tt.in), lim, nil)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want == nil && (typ != frData || string(p) != "hello") {
				t.Fatalf("got %s %q", frameName(typ), p)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	var b bytes.Buffer
	if err := writeHeader(&b); err != nil {
		t.Fatal(err)
	}
	for i := range headerLen {
		h := bytes.Clone(b.Bytes())
		h[i] ^= 1
		if err := readHeader(bytes.NewReader(h)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("flip at %d: err = %v, want ErrCorrupt", i, err)
		}
	}
	if err := readHeader(bytes.NewReader(b.Bytes()[:5])); !errors.Is(err, ErrTruncated) {
		t.Errorf("short header: err = %v, want ErrTruncated", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(encodeFrame(frData, []byte("hello")))
	f.Add(encodeFrame(frZstd, []byte{0, 0, 0, 5, 1, 2, 3}))
	f.Add(encodeFrame(frChunk, chunkHdr{File: 1, Offset: 2, Length: 3}.marshal()))
	f.Add(encodeFrame(frManifest, []byte(`{"version":1,"entries":[]}`)))
	f.Add([]byte{frTrailer, 0, 0, 0, 16})
	lim := Limits{MaxFrameSize: 64 << 10, MaxManifestBytes: 64 << 10}.withDefaults()
	f.Fuzz(func(t *testing.T, in []byte) {
		typ, p, err := readFrame(bytes.NewReader(in), lim, make([]byte, 0, 16))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		lo, hi, ok := payloadBounds(typ, lim)
		if !ok || len(p) < lo || len(p) > hi {
			t.Fatalf("accepted %s frame of %d bytes outside %d..%d", frameName(typ), len(p), lo, hi)
		}
		if re := encodeFrame(typ, p); !bytes.Equal(re, in[:len(re)]) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}
