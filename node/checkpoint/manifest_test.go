package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// finished makes a finished checkpoint with a few files and returns it.
func finished(t *testing.T) *Checkpoint {
	t.Helper()
	parent := t.TempDir()
	p, err := Begin(parent, NewID(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(p.ImagesDir(), "pages-1.img"), bytes.Repeat([]byte("page"), 4096), 0o600)
	os.WriteFile(filepath.Join(p.ImagesDir(), "core-1.img"), []byte("core"), 0o600)
	os.WriteFile(p.DiffPath(), []byte("tar"), 0o600)
	os.WriteFile(filepath.Join(p.LogsDir(), "dump.log"), []byte("log"), 0o600)
	if err := p.WriteRecord(map[string]string{"name": "np"}); err != nil {
		t.Fatal(err)
	}
	ck, m, err := p.Finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 4 {
		t.Fatalf("manifest lists %d files, want 4 (logs are not covered): %+v", len(m.Files), m.Files)
	}
	return ck
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"intact", func(*testing.T, string) {}, ""},
		{"flipped byte", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "images", "pages-1.img")
			b, _ := os.ReadFile(p)
			b[100] ^= 1
			os.WriteFile(p, b, 0o600)
		}, "images/pages-1.img has sha256"},
		{"truncated", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "images", "pages-1.img"), 10)
		}, "images/pages-1.img has 10 bytes"},
		{"missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, DiffFile)) }, "rootfs-diff.tar is missing"},
		{"extra", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "images", "extra.img"), []byte("x"), 0o600)
		}, "images/extra.img is not in the manifest"},
		{"logs may change", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, LogsDir, "restore.log"), []byte("x"), 0o600)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck := finished(t)
			tt.break_(t, ck.Dir)
			err := ck.Verify(context.Background())
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want ErrCorrupt saying %q", err, tt.want)
			}
		})
	}
}

func TestPendingIsInvisibleUntilFinished(t *testing.T) {
	parent := t.TempDir()
	id := NewID(time.Now())
	p, err := Begin(parent, id)
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := List(parent); len(ids) != 0 {
		t.Fatalf("an unfinished checkpoint is listed: %v", ids)
	}
	if _, err := Open(parent, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of an unfinished checkpoint: %v", err)
	}
	p.Abort()
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("Abort left %v", ents)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{NewID(time.Now()): true, "../x": false, "a/b": false, "": false, ".": false, "ok-1": true} {
		if ValidID(id) != want {
			t.Errorf("ValidID(%q) = %v", id, !want)
		}
	}
}

func TestDecodeManifestRejects(t *testing.T) {
	sum := strings.Repeat("a", 64)
	for name, doc := range map[string]string{
		"not json":  "{",
		"version":   `{"version":9,"files":[]}`,
		"traversal": `{"version":1,"files":[{"path":"../x","size":1,"sha256":"` + sum + `"}]}`,
		"absolute":  `{"version":1,"files":[{"path":"/etc/x","size":1,"sha256":"` + sum + `"}]}`,
		"unclean":   `{"version":1,"files":[{"path":"images/../../x","size":1,"sha256":"` + sum + `"}]}`,
		"duplicate": `{"version":1,"files":[{"path":"a","size":1,"sha256":"` + sum + `"},{"path":"a","size":1,"sha256":"` + sum + `"}]}`,
		"negative":  `{"version":1,"files":[{"path":"a","size":-1,"sha256":"` + sum + `"}]}`,
		"bad sum":   `{"version":1,"files":[{"path":"a","size":1,"sha256":"zz"}]}`,
	} {
		if _, err := DecodeManifest(strings.NewReader(doc)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: DecodeManifest = %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"files":[{"path":"images/pages-1.img","size":4096,"sha256":"` + strings.Repeat("0", 64) + `"}]}`))
	f.Add([]byte(`{"version":1,"files":[{"path":"../x","size":1,"sha256":""}]}`))
	f.Add([]byte(`{"version":2,"chunk_size":8388608,"files":[{"path":"images/pages-1.img","size":4096,"chunks":["` + strings.Repeat("0", 64) + `"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, file := range m.Files {
			if strings.HasPrefix(file.Path, "/") || strings.HasPrefix(file.Path, "../") || strings.Contains(file.Path, "/../") {
				t.Fatalf("accepted an unsafe path %q", file.Path)
			}
		}
	})
}

func TestPublishThenSeal(t *testing.T) {
	parent := t.TempDir()
	p, err := Begin(parent, "20260101T000000Z-abcdef01")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.ImagesDir(), "pages-1.img"), []byte("pages"), 0o600); err != nil {
		t.Fatal(err)
	}
	ck, seal, err := p.Publish()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(parent, ck.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open before seal: %v, want ErrNotFound", err)
	}
	if ids, _ := List(parent); len(ids) != 0 {
		t.Fatalf("List before seal: %v", ids)
	}
	m, err := seal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 1 || m.Files[0].Path != "images/pages-1.img" || m.ID != ck.ID {
		t.Fatalf("manifest %+v", m)
	}
	if _, err := Open(parent, ck.ID); err != nil {
		t.Fatal(err)
	}
	if err := ck.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}
