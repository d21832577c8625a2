package stream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const emptySum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func entry(p string, size int64) Entry {
	return Entry{Path: p, Size: size, SHA256: emptySum, Mode: 0o644}
}

func TestManifestValidate(t *testing.T) {
	lim := Limits{MaxEntries: 3, MaxFileSize: 100, MaxTotalSize: 150, MaxPathLen: 20}
	tests := []struct {
		name    string
		entries []Entry
		version int
		want    error
	}{
		{"ok", []Entry{entry("a", 1), entry("d/b", 100)}, 1, nil},
		{"no entries", nil, 1, nil},
		{"version", []Entry{entry("a", 1)}, 2, ErrManifest},
		{"dotdot", []Entry{entry("../x", 1)}, 1, ErrUnsafePath},
		{"inner dotdot", []Entry{entry("a/../../x", 1)}, 1, ErrUnsafePath},
		{"absolute", []Entry{entry("/etc/x", 1)}, 1, ErrUnsafePath},
		{"empty name", []Entry{entry("", 1)}, 1, ErrUnsafePath},
		{"dot", []Entry{entry(".", 1)}, 1, ErrUnsafePath},
		{"unclean", []Entry{entry("a//b", 1)}, 1, ErrUnsafePath},
		{"dot component", []Entry{entry("./a", 1)}, 1, ErrUnsafePath},
		{"trailing slash", []Entry{entry("a/", 1)}, 1, ErrUnsafePath},
		{"backslash", []Entry{entry(`a\..\b`, 1)}, 1, ErrUnsafePath},
		{"nul", []Entry{entry("a\x00b", 1)}, 1, ErrUnsafePath},
		{"duplicate", []Entry{entry("a", 1), entry("a", 2)}, 1, ErrManifest},
		{"file as dir", []Entry{entry("a", 1), entry("a/b", 2)}, 1, ErrManifest},
		{"negative size", []Entry{entry("a", -1)}, 1, ErrManifest},
		{"file too large", []Entry{entry("a", 101)}, 1, ErrTooLarge},
		{"total too large", []Entry{entry("a", 100), entry("b", 51)}, 1, ErrTooLarge},
		{"too many", []Entry{entry("a", 0), entry("b", 0), entry("c", 0), entry("d", 0)}, 1, ErrTooLarge},
		{"long path", []Entry{entry(strings.Repeat("x", 21), 0)}, 1, ErrTooLarge},
		{"bad digest", []Entry{{Path: "a", SHA256: "xyz"}}, 1, ErrManifest},
		{"upper digest", []Entry{{Path: "a", SHA256: strings.ToUpper(emptySum)}}, 1, ErrManifest},
		{"setuid", []Entry{{Path: "a", SHA256: emptySum, Mode: 0o4755}}, 1, ErrManifest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manifest{Version: tt.version, Entries: tt.entries}
			err := m.Validate(lim)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecodeManifest(t *testing.T) {
	tests := []struct {
		name, in string
		want     error
	}{
		{"ok", `{"version":1,"entries":[{"path":"a","size":0,"sha256":"` + emptySum + `","mode":420}]}`, nil},
		{"unknown field", `{"version":1,"entries":[],"extra":1}`, ErrManifest},
		{"trailing", `{"version":1,"entries":[]} {}`, ErrManifest},
		{"not json", `nope`, ErrManifest},
		{"unsafe", `{"version":1,"entries":[{"path":"../x","size":0,"sha256":"` + emptySum + `"}]}`, ErrUnsafePath},
		{"too big", `{"version":1,"entries":[]}` + strings.Repeat(" ", 200), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeManifest([]byte(tt.in), Limits{MaxManifestBytes: 200})
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("DecodeManifest = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBuildManifest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{"b/c.img": []byte("abc"), "a.json": {}})
	m, err := BuildManifest(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Path: "a.json", Size: 0, SHA256: emptySum, Mode: 0o640},
		{Path: "b/c.img", Size: 3, SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Mode: 0o640},
	}
	if len(m.Entries) != 2 || m.Entries[0] != want[0] || m.Entries[1] != want[1] {
		t.Fatalf("entries = %+v, want %+v", m.Entries, want)
	}
	if err := m.Validate(Limits{}); err != nil {
		t.Fatal(err)
	}
}

func TestBuildManifestRefuses(t *testing.T) {
	tests := []struct {
		name string
		make func(dir string) error
		want error
	}{
		{"symlink", func(d string) error { return os.Symlink("/etc/passwd", filepath.Join(d, "link")) }, ErrUnsafePath},
		{"fifo", func(d string) error { return syscall.Mkfifo(filepath.Join(d, "fifo"), 0o600) }, ErrNotRegular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.make(dir); err != nil {
				t.Fatal(err)
			}
			_, err := BuildManifest(context.Background(), dir)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("err = %v, want %v naming the file", err, tt.want)
			}
		})
	}
}

func TestBuildManifestCancel(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{"a": []byte("x")})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BuildManifest(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func FuzzManifestDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"entries":[{"path":"a/b","size":3,"sha256":"` + emptySum + `","mode":420}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"../x","size":0,"sha256":"` + emptySum + `"}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"a","size":1},{"path":"a/b","size":-1}]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeManifest(in, Limits{MaxManifestBytes: 1 << 16, MaxEntries: 100})
		if err != nil {
			return
		}
		for _, e := range m.Entries {
			if filepath.IsAbs(e.Path) || !filepath.IsLocal(e.Path) || e.Size < 0 {
				t.Fatalf("accepted unsafe entry %+v", e)
			}
		}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeManifest(b, Limits{}); err != nil {
			t.Fatalf("re-decoding an accepted manifest: %v", err)
		}
	})
}
