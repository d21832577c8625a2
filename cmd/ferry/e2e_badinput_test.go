package main

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTar(t *testing.T, path string, entries map[string]string, links map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	for name, target := range links {
		if err := tw.WriteHeader(&tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: tar.TypeSymlink}); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	dir := t.TempDir()

	t.Run("archive with ../ path", func(t *testing.T) {
		p := filepath.Join(dir, "evil.tar")
		writeTar(t, p, map[string]string{"bin/ok": "x", "../../evil": "pwned"}, nil)
		a.fails(1, "evil", "image", "import", "evil", p)
	})
	t.Run("archive with an escaping link", func(t *testing.T) {
		p := filepath.Join(dir, "link.tar")
		writeTar(t, p, nil, map[string]string{"etc": "../../../etc"})
		a.fails(1, "etc", "image", "import", "link", p)
	})
	t.Run("truncated archive", func(t *testing.T) {
		b, err := os.ReadFile(bins.image)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "short.tar")
		os.WriteFile(p, b[:len(b)/2+100], 0o644)
		a.fails(1, "import", "image", "import", "short", p)
	})
	if ls := a.must("image", "ls"); strings.Contains(ls, "evil") || strings.Contains(ls, "link") || strings.Contains(ls, "short") {
		t.Fatalf("a refused import left an image:\n%s", ls)
	}

	t.Run("unknown container", func(t *testing.T) {
		for _, args := range [][]string{{"checkpoint", "nope"}, {"restore", "nope"}, {"logs", "nope"}, {"stop", "nope"}, {"exec", "nope", "--", "true"}} {
			a.fails(1, `no container named "nope"`, args...)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		a.fails(2, "container name", "run", "--name", "Bad/Name", "busybox", "--", "true")
		a.fails(2, "--memory", "run", "--name", "x", "--memory", "lots", "busybox")
		a.fails(2, "usage", "checkpoint")
		a.fails(1, `no image "nosuch"`, "run", "--name", "x", "nosuch", "--", "true")
	})
	t.Run("checkpoint of a stopped container", func(t *testing.T) {
		a.must("run", "--name", "st", "busybox", "--", "sleep", "1000")
		a.must("stop", "--time", "1s", "st")
		a.fails(1, "only a running container can be checkpointed", "checkpoint", "st")
	})
	t.Run("restore from a checkpoint with a flipped byte", func(t *testing.T) {
		a.must("run", "--name", "np", "busybox", "--", "sh", "-c", numberPrinter)
		a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= 5 })
		a.must("checkpoint", "np")
		pages, _ := filepath.Glob(filepath.Join(a.dataDir, "checkpoints", "np", "*", "images", "pages-*.img"))
		if len(pages) == 0 {
			t.Fatal("no pages image in the checkpoint")
		}
		flip(t, pages[0], 4096+17)
		r := a.fails(1, filepath.Base(pages[0]), "restore", "np")
		if !strings.Contains(r.stderr, "not touched") {
			t.Fatalf("refusal does not say the container was left alone: %s", r.stderr)
		}
		if ps := a.must("ps"); !strings.Contains(ps, "checkpointed") {
			t.Fatalf("after a refused restore the container is not left checkpointed:\n%s", ps)
		}
		if out, _ := exec.Command("runc", "--root", filepath.Join(a.dataDir, "runc"), "list", "-q").Output(); strings.TrimSpace(string(out)) != "" {
			t.Fatalf("a refused restore left a runc container: %s", out)
		}
		flip(t, pages[0], 4096+17) // put it back: the same checkpoint now restores
		a.must("restore", "np")
		n := len(a.waitLog("np", 5*time.Second, func([]string) bool { return true }))
		checkSequence(t, a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= n+5 }))
	})
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if off >= st.Size() {
		off = st.Size() / 2
	}
	b := make([]byte, 1)
	f.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
