package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chunkedDir writes a checkpoint-like directory with a file of several pieces of chunk bytes (and a ragged
// end), a small one and an empty one, and writes its manifest of the given version; it returns the
// directory and the manifest.
func chunkedDir(t *testing.T, version int, chunk int64) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 3*chunk+17)
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	for p, b := range map[string][]byte{"images/pages-1.img": big, "images/core-1.img": []byte("core"), "images/empty.img": nil} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := buildManifest(context.Background(), dir, version, chunk)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.write(dir); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func sumOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestManifestChunks: a version 2 manifest sums each file in pieces of its chunk size (an empty file has one
// piece), read once; the pieces' sums are those of the file's bytes.
func TestManifestChunks(t *testing.T) {
	const chunk = 4096
	dir, m := chunkedDir(t, 2, chunk)
	if m.Version != 2 || m.ChunkSize != chunk {
		t.Fatalf("manifest version %d chunk size %d", m.Version, m.ChunkSize)
	}
	big, _ := os.ReadFile(filepath.Join(dir, "images/pages-1.img"))
	want := map[string][]string{
		"images/pages-1.img": {sumOf(big[:chunk]), sumOf(big[chunk : 2*chunk]), sumOf(big[2*chunk : 3*chunk]), sumOf(big[3*chunk:])},
		"images/core-1.img":  {sumOf([]byte("core"))},
		"images/empty.img":   {sumOf(nil)},
	}
	for _, f := range m.Files {
		if f.SHA256 != "" || strings.Join(f.Chunks, ",") != strings.Join(want[f.Path], ",") {
			t.Errorf("%s: sha256 %q chunks %v, want chunks %v", f.Path, f.SHA256, f.Chunks, want[f.Path])
		}
	}
	if _, err := ReadManifest(dir); err != nil {
		t.Fatalf("the manifest does not read back: %v", err)
	}
	// The real one sums in ChunkSize pieces.
	if m, err := BuildManifest(context.Background(), dir); err != nil || m.Version != ManifestVersion || m.ChunkSize != ChunkSize {
		t.Fatalf("BuildManifest: version %d chunk size %d, %v", m.Version, m.ChunkSize, err)
	}
}

// TestVerifyVersions: manifests of both versions verify an intact directory and refuse a flipped byte,
// naming the file (and, with pieces, where).
func TestVerifyVersions(t *testing.T) {
	for _, version := range []int{1, 2} {
		t.Run(map[int]string{1: "v1", 2: "v2"}[version], func(t *testing.T) {
			dir, _ := chunkedDir(t, version, 4096)
			if err := VerifyDir(context.Background(), dir); err != nil {
				t.Fatalf("intact: %v", err)
			}
			p := filepath.Join(dir, "images/pages-1.img")
			b, _ := os.ReadFile(p)
			b[2*4096+5] ^= 1
			os.WriteFile(p, b, 0o600)
			err := VerifyDir(context.Background(), dir)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "images/pages-1.img has sha256") {
				t.Fatalf("flipped byte: %v, want ErrCorrupt naming the file", err)
			}
			if version == 2 && !strings.Contains(err.Error(), "in bytes 8192-12288") {
				t.Fatalf("flipped byte: %v, want the piece named", err)
			}
		})
	}
}

// receivedAs is what a transfer that cut files in pieces of chunk bytes (0: whole) reports for dir's files.
func receivedAs(t *testing.T, dir string, chunk int64) map[string]Sum {
	t.Helper()
	v := 2
	if chunk == 0 {
		v = 1
	}
	m, err := buildManifest(context.Background(), dir, v, chunk)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Sum{}
	for _, f := range m.Files {
		if f.Path == ManifestFile {
			continue
		}
		s := Sum{Size: f.Size, SHA256: f.SHA256, ChunkSize: chunk, Chunks: f.Chunks}
		if len(f.Chunks) == 1 {
			s.SHA256, s.ChunkSize = f.Chunks[0], 0
		}
		out[f.Path] = s
	}
	return out
}

// TestMatchManifest: the sums a transfer checked prove the files when they are of the manifest's pieces
// (the files are not read: a file spoiled on disk after its arrival goes unseen, which is what shows it),
// and are refused naming the file when they differ; sums of other pieces (a version 1 manifest, or pieces
// of another size) are not trusted either way: the file is read back and hashed.
func TestMatchManifest(t *testing.T) {
	ctx := context.Background()
	spoilDisk := func(t *testing.T, dir string) {
		p := filepath.Join(dir, "images/pages-1.img")
		b, _ := os.ReadFile(p)
		b[10] ^= 1
		os.WriteFile(p, b, 0o600)
	}
	tests := []struct {
		name    string
		version int
		sentIn  int64 // the transfer's pieces
		spoil   func(t *testing.T, dir string, got map[string]Sum)
		want    string // "" for no error
	}{
		{"v2, same pieces", 2, 4096, func(*testing.T, string, map[string]Sum) {}, ""},
		{"v2, same pieces: files not read", 2, 4096, func(t *testing.T, dir string, _ map[string]Sum) { spoilDisk(t, dir) }, ""},
		{"v2, a piece arrived with another sum", 2, 4096, func(_ *testing.T, _ string, got map[string]Sum) {
			s := got["images/pages-1.img"]
			s.Chunks = append([]string(nil), s.Chunks...)
			s.Chunks[3] = strings.Repeat("0", 64)
			got["images/pages-1.img"] = s
		}, "images/pages-1.img has sha256 000000000000… in bytes 12288-12305"},
		{"v2, a small file arrived with another sum", 2, 4096, func(_ *testing.T, _ string, got map[string]Sum) {
			s := got["images/core-1.img"]
			s.SHA256, s.Chunks = strings.Repeat("1", 64), []string{strings.Repeat("1", 64)}
			got["images/core-1.img"] = s
		}, "images/core-1.img has sha256 111111111111…"},
		{"v2, other pieces: read back", 2, 8192, func(t *testing.T, dir string, _ map[string]Sum) { spoilDisk(t, dir) }, "images/pages-1.img has sha256"},
		{"v2, other pieces, intact", 2, 8192, func(*testing.T, string, map[string]Sum) {}, ""},
		{"v2, whole files: read back", 2, 0, func(t *testing.T, dir string, _ map[string]Sum) { spoilDisk(t, dir) }, "images/pages-1.img has sha256"},
		{"v1, whole files", 1, 0, func(*testing.T, string, map[string]Sum) {}, ""},
		{"v1, pieces, intact", 1, 4096, func(*testing.T, string, map[string]Sum) {}, ""},
		{"v1, pieces: read back", 1, 4096, func(t *testing.T, dir string, _ map[string]Sum) { spoilDisk(t, dir) }, "images/pages-1.img has sha256"},
		{"size differs", 2, 4096, func(_ *testing.T, _ string, got map[string]Sum) {
			s := got["images/core-1.img"]
			s.Size++
			got["images/core-1.img"] = s
		}, "images/core-1.img has 5 bytes"},
		{"missing", 2, 4096, func(_ *testing.T, _ string, got map[string]Sum) { delete(got, "images/empty.img") }, "images/empty.img is missing"},
		{"unlisted", 2, 4096, func(_ *testing.T, _ string, got map[string]Sum) {
			got["images/extra.img"] = Sum{Size: 1, SHA256: strings.Repeat("2", 64)}
		}, "images/extra.img is not in the manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := chunkedDir(t, tt.version, 4096)
			got := receivedAs(t, dir, tt.sentIn)
			tt.spoil(t, dir, got)
			err := MatchManifest(ctx, dir, got)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("MatchManifest: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("MatchManifest = %v, want ErrCorrupt saying %q", err, tt.want)
			}
		})
	}
}

func TestDecodeManifestV2Rejects(t *testing.T) {
	sum := strings.Repeat("a", 64)
	for name, doc := range map[string]string{
		"no chunk size":    `{"version":2,"files":[{"path":"a","size":1,"chunks":["` + sum + `"]}]}`,
		"tiny chunk size":  `{"version":2,"chunk_size":16,"files":[{"path":"a","size":1,"chunks":["` + sum + `"]}]}`,
		"too few chunks":   `{"version":2,"chunk_size":4096,"files":[{"path":"a","size":4097,"chunks":["` + sum + `"]}]}`,
		"too many chunks":  `{"version":2,"chunk_size":4096,"files":[{"path":"a","size":4096,"chunks":["` + sum + `","` + sum + `"]}]}`,
		"no chunks":        `{"version":2,"chunk_size":4096,"files":[{"path":"a","size":0}]}`,
		"whole sum in v2":  `{"version":2,"chunk_size":4096,"files":[{"path":"a","size":1,"sha256":"` + sum + `","chunks":["` + sum + `"]}]}`,
		"bad chunk sum":    `{"version":2,"chunk_size":4096,"files":[{"path":"a","size":1,"chunks":["` + strings.Repeat("A", 64) + `"]}]}`,
		"chunks in v1":     `{"version":1,"files":[{"path":"a","size":1,"sha256":"` + sum + `","chunks":["` + sum + `"]}]}`,
		"chunk size in v1": `{"version":1,"chunk_size":4096,"files":[{"path":"a","size":1,"sha256":"` + sum + `"}]}`,
		"traversal":        `{"version":2,"chunk_size":4096,"files":[{"path":"../a","size":1,"chunks":["` + sum + `"]}]}`,
	} {
		if _, err := DecodeManifest(strings.NewReader(doc)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: DecodeManifest = %v, want ErrCorrupt", name, err)
		}
	}
	ok := `{"version":2,"chunk_size":4096,"files":[{"path":"a","size":4097,"chunks":["` + sum + `","` + sum + `"]},{"path":"b","size":0,"chunks":["` + sum + `"]}]}`
	if _, err := DecodeManifest(strings.NewReader(ok)); err != nil {
		t.Fatalf("a good version 2 manifest: %v", err)
	}
}
