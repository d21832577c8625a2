package stream

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// mixedData returns n bytes: the first half text-like (log and JSON lines
// with varying numbers), the second half pseudo-random, like memory pages.
func mixedData(n int, seed uint64) []byte {
	b := make([]byte, 0, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := []string{"checkpoint", "restore", "page", "mm", "vma", "fd", "tcp", "pid", "ns", "cgroup",
		"{\"id\":", "\"status\":\"ok\"", "0x7f00", "INFO", "DEBUG", "epoll", "socket", "inotify"}
	for len(b) < n/2 {
		b = append(b, time.Unix(1700000000+int64(r.IntN(1e6)), 0).UTC().Format(time.RFC3339)...)
		for range 6 + r.IntN(8) {
			b = append(b, ' ')
			b = append(b, words[r.IntN(len(words))]...)
			if r.IntN(3) == 0 {
				b = append(b, '=')
				b = append(b, []byte(time.Duration(r.IntN(1e9)).String())...)
			}
		}
		b = append(b, '\n')
	}
	b = b[:n/2]
	for len(b) < n {
		v := r.Uint64()
		b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
	}
	return b[:n]
}

// writeTree creates files (relative path -> content) under dir.
func writeTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// sampleTree is a checkpoint-like directory: small files, an empty one,
// nested paths, and one big file of size big.
func sampleTree(big int) map[string][]byte {
	return map[string][]byte{
		"descriptors.json":      []byte(`{"version":1,"ok":true}`),
		"empty.img":             {},
		"core-1.img":            mixedData(5000, 1),
		"nested/deeper/fs.tar":  mixedData(300_000, 2),
		"nested/inventory.img":  []byte("inventory"),
		"pages-1.img":           mixedData(big, 3),
		"tiny":                  {'x'},
		"nested/deeper/z.json":  []byte("{}"),
		"nested/another/a.json": []byte("[]"),
	}
}

// sameTree fails unless dir holds exactly files.
func sameTree(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want, ok := files[filepath.ToSlash(rel)]
		if !ok {
			t.Errorf("unexpected file %s", rel)
			return nil
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(got), len(want))
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("found %d files, want %d", n, len(files))
	}
}

// sendToBytes runs Send into a buffer.
func sendToBytes(t testing.TB, dir string, m *Manifest, opts SendOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Send(context.Background(), &buf, dir, m, opts); err != nil {
		t.Fatalf("Send: %v", err)
	}
	return buf.Bytes()
}

// pipeTransfer sends src over one io.Pipe and receives into dst.
func pipeTransfer(ctx context.Context, src, dst string, m *Manifest, so SendOptions, ro ReceiveOptions) (Stats, Stats, *Manifest, error, error) {
	pr, pw := io.Pipe()
	type res struct {
		st  Stats
		err error
	}
	ch := make(chan res, 1)
	go func() {
		st, err := Send(ctx, pw, src, m, so)
		pw.CloseWithError(err)
		ch <- res{st, err}
	}()
	got, rst, rerr := Receive(ctx, pr, dst, ro)
	pr.CloseWithError(rerr)
	s := <-ch
	return s.st, rst, got, s.err, rerr
}

// noSuchDir fails if p exists.
func noSuchDir(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("%s exists after a failed receive", p)
	}
}

// onlyEntries fails unless dir holds exactly the names given.
func onlyEntries(t testing.TB, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("%s: unexpected entry %s left behind", dir, e.Name())
		}
	}
}
