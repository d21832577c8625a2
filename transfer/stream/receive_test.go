package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smallTree has a compressible file big enough for several frames, random
// pages (stored frames), nested paths and an empty file.
func smallTree() map[string][]byte {
	return map[string][]byte{
		"a.json":       []byte(`{"a":1}`),
		"empty":        {},
		"dir/text.log": mixedData(400_000, 11)[:200_000],
		"dir/pages":    mixedData(400_000, 12)[200_000:],
	}
}

// wireOf sends smallTree with 64 KiB frames and returns the stream.
func wireOf(t testing.TB) []byte {
	t.Helper()
	src := t.TempDir()
	writeTree(t, src, smallTree())
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	return sendToBytes(t, src, m, SendOptions{FrameSize: 64 << 10})
}

type frameAt struct {
	off, size int
	typ       byte
}

// framesOf lists the frames of a valid stream with their offsets.
func framesOf(t testing.TB, wire []byte) []frameAt {
	t.Helper()
	var out []frameAt
	r := bytes.NewReader(wire[headerLen:])
	for r.Len() > 0 {
		off := len(wire) - r.Len()
		typ, p, err := readFrame(r, DefaultLimits(), nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, frameAt{off, frameHdrLen + len(p) + frameCRCLen, typ})
	}
	return out
}

// firstFrame returns the first frame of type typ.
func firstFrame(t testing.TB, fs []frameAt, typ byte) frameAt {
	for _, f := range fs {
		if f.typ == typ {
			return f
		}
	}
	t.Fatalf("no %s frame", frameName(typ))
	return frameAt{}
}

// receiveBytes receives wire into parent/out.
func receiveBytes(t testing.TB, wire []byte) (string, error) {
	t.Helper()
	parent := t.TempDir()
	dst := filepath.Join(parent, "out")
	_, _, err := Receive(context.Background(), bytes.NewReader(wire), dst, ReceiveOptions{})
	return dst, err
}

func TestReceiveFlippedByte(t *testing.T) {
	wire := wireOf(t)
	frames := framesOf(t, wire)
	mid := func(f frameAt) int { return f.off + f.size/2 }
	zstdF, dataF := firstFrame(t, frames, frZstd), firstFrame(t, frames, frData)
	for _, f := range frames {
		if f.typ == frData && f.size > dataF.size {
			dataF = f // a stored frame of random pages
		}
	}
	tests := []struct {
		name string
		off  int
	}{
		{"magic", 0},
		{"version", headerLen - 1},
		{"stream frame type", headerLen},
		{"stream frame length", headerLen + 4},
		{"stream frame payload", headerLen + frameHdrLen + 3},
		{"manifest payload", mid(firstFrame(t, frames, frManifest))},
		{"manifest crc", firstFrame(t, frames, frManifest).off + firstFrame(t, frames, frManifest).size - 1},
		{"chunk frame", mid(firstFrame(t, frames, frChunk))},
		{"zstd data frame", mid(zstdF)},
		{"zstd data raw length", zstdF.off + frameHdrLen + 2},
		{"stored data frame", mid(dataF)},
		{"chunk end frame", mid(firstFrame(t, frames, frChunkEnd))},
		{"trailer", mid(firstFrame(t, frames, frTrailer))},
		{"last byte", len(wire) - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := bytes.Clone(wire)
			w[tt.off] ^= 0x40
			dst, err := receiveBytes(t, w)
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("err = %v, want ErrCorrupt or ErrTruncated", err)
			}
			t.Log(err)
			noSuchDir(t, dst)
			onlyEntries(t, filepath.Dir(dst))
		})
	}
}

func TestReceiveTruncated(t *testing.T) {
	wire := wireOf(t)
	frames := framesOf(t, wire)
	dataF := firstFrame(t, frames, frZstd)
	trailer := firstFrame(t, frames, frTrailer)
	for _, n := range []int{0, 5, headerLen, headerLen + 3, frames[1].off + 10, dataF.off, dataF.off + 100,
		trailer.off, len(wire) - 1} {
		dst, err := receiveBytes(t, wire[:n])
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Errorf("cut at %d of %d: err = %v, want ErrTruncated", n, len(wire), err)
		}
		noSuchDir(t, dst)
	}
	dst, err := receiveBytes(t, wire[:trailer.off])
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("cut before trailer: err = %v, want ErrTruncated", err)
	}
	noSuchDir(t, dst)
}

func TestReceiveSizeLies(t *testing.T) {
	for _, delta := range []int64{+7, -7} {
		t.Run(map[bool]string{true: "larger", false: "smaller"}[delta > 0], func(t *testing.T) {
			src := t.TempDir()
			writeTree(t, src, smallTree())
			m, err := BuildManifest(context.Background(), src)
			if err != nil {
				t.Fatal(err)
			}
			i := 1 // dir/pages
			m.Entries[i].Size += delta
			dst := filepath.Join(t.TempDir(), "out")
			_, _, _, serr, rerr := pipeTransfer(context.Background(), src, dst, m, SendOptions{}, ReceiveOptions{})
			for side, err := range map[string]error{"send": serr, "receive": rerr} {
				if !errors.Is(err, ErrSize) || !strings.Contains(err.Error(), m.Entries[i].Path) {
					t.Errorf("%s: err = %v, want ErrSize naming %s", side, err, m.Entries[i].Path)
				}
				t.Logf("%s: %v", side, err)
			}
			noSuchDir(t, dst)
		})
	}
}

func TestReceiveChecksumMismatch(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, smallTree())
	m, err := BuildManifest(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	m.Entries[2].SHA256 = strings.Repeat("ab", 32)
	dst, err := receiveBytes(t, sendToBytes(t, src, m, SendOptions{}))
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), m.Entries[2].Path) {
		t.Fatalf("err = %v, want ErrChecksum naming %s", err, m.Entries[2].Path)
	}
	noSuchDir(t, dst)
}

// craftStream builds a stream by hand, without Send's checks: one chunk
// per file, each stored in one data frame.
func craftStream(entries []Entry, data [][]byte) []byte {
	var b bytes.Buffer
	mj, _ := (&Manifest{Version: 1, Entries: entries}).Encode()
	info := streamInfo{Count: 1, ManifestSum: sha256.Sum256(mj)}
	_ = writeHeader(&b)
	_ = writeFrame(&b, frStream, info.marshal(), nil)
	_ = writeFrame(&b, frManifest, mj, nil)
	var raw uint64
	for i, d := range data {
		_ = writeFrame(&b, frChunk, chunkHdr{File: uint32(i), Length: uint64(len(d))}.marshal(), nil)
		if len(d) > 0 {
			_ = writeFrame(&b, frData, d, nil)
		}
		sum := sha256.Sum256(d)
		_ = writeFrame(&b, frChunkEnd, marshalChunkEnd(uint32(i), uint64(len(d)), sum[:]), nil)
		raw += uint64(len(d))
	}
	_ = writeFrame(&b, frTrailer, marshalTrailer(uint64(len(data)), raw), nil)
	return b.Bytes()
}

func sumHex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestReceiveUnsafePaths(t *testing.T) {
	for _, p := range []string{"../x", "/etc/x", "a/../../x", "a/./b"} {
		t.Run(p, func(t *testing.T) {
			data := []byte("evil")
			wire := craftStream([]Entry{{Path: p, Size: 4, SHA256: sumHex(data)}}, [][]byte{data})
			dst, err := receiveBytes(t, wire)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("err = %v, want ErrUnsafePath", err)
			}
			noSuchDir(t, dst)
			onlyEntries(t, filepath.Dir(dst))
		})
	}
}

func TestReceiveCraftedOK(t *testing.T) {
	data := []byte("hello")
	wire := craftStream([]Entry{{Path: "x/y", Size: 5, SHA256: sumHex(data), Mode: 0o600}}, [][]byte{data})
	dst, err := receiveBytes(t, wire)
	if err != nil {
		t.Fatal(err)
	}
	sameTree(t, dst, map[string][]byte{"x/y": data})
}

func TestReceiveMissingFile(t *testing.T) {
	data := []byte("hello")
	es := []Entry{{Path: "a", Size: 5, SHA256: sumHex(data)}, {Path: "b", Size: 5, SHA256: sumHex(data)}}
	dst, err := receiveBytes(t, craftStream(es, [][]byte{data}))
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "b") {
		t.Fatalf("err = %v, want ErrTruncated naming b", err)
	}
	noSuchDir(t, dst)
}

func TestReceiveDestinationExists(t *testing.T) {
	dst := t.TempDir()
	_, _, err := Receive(context.Background(), bytes.NewReader(nil), dst, ReceiveOptions{})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
}

func TestReceiveAbort(t *testing.T) {
	wire := wireOf(t)
	cut := firstFrame(t, framesOf(t, wire), frChunk).off
	var b bytes.Buffer
	b.Write(wire[:cut])
	_ = writeFrame(&b, frAbort, []byte("disk on fire"), nil)
	dst, err := receiveBytes(t, b.Bytes())
	if !errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v, want ErrAborted with the reason", err)
	}
	noSuchDir(t, dst)
}

func FuzzReceive(f *testing.F) {
	data := []byte("hello")
	f.Add(craftStream([]Entry{{Path: "x/y", Size: 5, SHA256: sumHex(data)}}, [][]byte{data}))
	f.Add(craftStream([]Entry{{Path: "../y", Size: 5, SHA256: sumHex(data)}}, [][]byte{data}))
	f.Add(craftStream([]Entry{{Path: "e", SHA256: emptySum}, {Path: "f", Size: 5, SHA256: sumHex(data)}}, [][]byte{nil, data}))
	f.Add(wireOf(f)[:3000])
	lim := Limits{MaxEntries: 64, MaxFileSize: 1 << 20, MaxTotalSize: 1 << 20, MaxManifestBytes: 1 << 16, MaxFrameSize: 64 << 10}
	var hdr bytes.Buffer
	_ = writeHeader(&hdr)
	f.Fuzz(func(t *testing.T, in []byte) {
		if !bytes.HasPrefix(in, []byte(magic)) {
			in = append(bytes.Clone(hdr.Bytes()), in...) // explore frames, not the magic
		}
		parent := t.TempDir()
		canary := filepath.Join(parent, "canary")
		if err := os.WriteFile(canary, []byte("c"), 0o600); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(parent, "sub", "out")
		if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, _, err := Receive(context.Background(), bytes.NewReader(in), dst, ReceiveOptions{Limits: lim})
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Receive took %v", d)
		}
		if err == nil {
			onlyEntries(t, filepath.Dir(dst), "out")
		} else {
			onlyEntries(t, filepath.Dir(dst))
		}
		onlyEntries(t, parent, "canary", "sub")
		if c, _ := os.ReadFile(canary); string(c) != "c" {
			t.Fatal("canary changed")
		}
	})
}
