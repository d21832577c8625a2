package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// entry is one tar entry of a test fixture.
type entry struct {
	hdr  *tar.Header
	body string
}

var fixtureTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func hdr(name string, typ byte, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Mode: mode, ModTime: fixtureTime, Format: tar.FormatPAX}
}

func file(name, body string) entry {
	h := hdr(name, tar.TypeReg, 0o644)
	h.Size = int64(len(body))
	return entry{hdr: h, body: body}
}

func dir(name string) entry { return entry{hdr: hdr(name, tar.TypeDir, 0o755)} }

func symlink(name, target string) entry {
	h := hdr(name, tar.TypeSymlink, 0o777)
	h.Linkname = target
	return entry{hdr: h}
}

func hardlink(name, target string) entry {
	h := hdr(name, tar.TypeLink, 0o644)
	h.Linkname = target
	return entry{hdr: h}
}

func withXattr(e entry, name, value string) entry {
	if e.hdr.PAXRecords == nil {
		e.hdr.PAXRecords = map[string]string{}
	}
	e.hdr.PAXRecords["SCHILY.xattr."+name] = value
	return e
}

// tarOf builds an uncompressed tar stream of entries.
func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatalf("fixture header %q: %v", e.hdr.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("fixture body %q: %v", e.hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox makes base/root (the destination) and base/outside (a canary
// that must stay empty) and returns both.
func sandbox(t testing.TB) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func requireEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s should be empty, has %d entries (first %q)", dir, len(ents), ents[0].Name())
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root, and CI must run it")
		}
		t.Skip("needs root")
	}
}
