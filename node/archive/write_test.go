package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// buildTree makes a tree with every kind of file Write must keep.
func buildTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	at := func(p string) string { return filepath.Join(dir, p) }
	must(os.MkdirAll(at("etc/deep/er"), 0o755))
	must(os.Mkdir(at("opaque"), 0o700))
	must(os.WriteFile(at("etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	must(os.WriteFile(at("bin"), bytes.Repeat([]byte{0xde, 0xad}, 70000), 0o755))
	must(os.Chmod(at("bin"), 0o4755|fs.ModeSetuid))
	must(os.WriteFile(at("etc/deep/er/empty"), nil, 0o600))
	must(os.Link(at("etc/passwd"), at("etc/passwd-link")))
	must(os.Symlink("../passwd", at("etc/deep/rel")))
	must(os.Symlink("/etc/passwd", at("abs")))
	must(unix.Mknod(at("whiteout"), unix.S_IFCHR, 0))
	must(unix.Mknod(at("opaque/whiteout"), unix.S_IFCHR, 0))
	must(unix.Mknod(at("blk"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 1))))
	must(unix.Mkfifo(at("fifo"), 0o640))
	must(unix.Lsetxattr(at("opaque"), opaqueXattr, []byte("y"), 0))
	must(unix.Lsetxattr(at("etc/passwd"), "user.note", []byte("hello\x00binary"), 0))
	must(unix.Lsetxattr(at("bin"), "security.capability", capNetBind(), 0))
	must(os.Lchown(at("etc/deep"), 1234, 5678))
	must(os.Lchown(at("abs"), 42, 43))
	ts := time.Date(2023, 1, 2, 3, 4, 5, 123456789, time.UTC)
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return setTimes(p, ts, ts.Add(time.Duration(len(p))*time.Second))
	})
	must(err)
}

// capNetBind is a VFS_CAP_REVISION_2 capability set granting
// CAP_NET_BIND_SERVICE (bit 10), as setcap writes it.
func capNetBind() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000)
	binary.LittleEndian.PutUint32(b[4:], 1<<10)
	return b
}

// describe lists everything about a tree that a round trip must keep.
func describe(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d rdev=%d mtime=%d.%09d",
			rel, st.Mode, st.Uid, st.Gid, st.Rdev, st.Mtim.Sec, st.Mtim.Nsec)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				line += " linkto=" + first
			}
			inodes[st.Ino] = rel
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" sha=%x", sha256.Sum256(b))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			line += " target=" + target
		}
		x, err := readXattrs(p, []string{""})
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			line += fmt.Sprintf(" %s=%q", k, x[k])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func TestWriteExtractRoundTrip(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	src := t.TempDir()
	buildTree(t, src)

	var buf bytes.Buffer
	wst, err := Write(ctx, &buf, src, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	est, err := Extract(ctx, bytes.NewReader(buf.Bytes()), dst, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if wst != est {
		t.Errorf("Write stats %+v, Extract stats %+v", wst, est)
	}
	want, got := describe(t, src), describe(t, dst)
	if want != got {
		t.Fatalf("round trip changed the tree\nwant:\n%s\ngot:\n%s", want, got)
	}
	if !strings.Contains(got, "linkto=etc/passwd") || !strings.Contains(got, "trusted.overlay.opaque") {
		t.Fatalf("fixture lacks a hard link or an opaque dir:\n%s", got)
	}

	var again bytes.Buffer
	if _, err := Write(ctx, &again, dst, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("Write of the same tree gave different bytes")
	}
}

func TestWriteXattrPrefixes(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	if err := unix.Lsetxattr(src, "user.a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(src, "trusted.other", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefixes []string
		want     string
	}{
		{nil, `user.a="1"`},
		{[]string{}, ""},
		{[]string{"trusted."}, `trusted.other="2"`},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		if _, err := Write(context.Background(), &buf, src, WriteOptions{XattrPrefixes: tc.prefixes}); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		if _, err := Extract(context.Background(), &buf, dst, ExtractOptions{}); err != nil {
			t.Fatal(err)
		}
		x, _ := readXattrs(dst, []string{""})
		got := ""
		for k, v := range x {
			got += fmt.Sprintf("%s=%q", k, v)
		}
		if got != tc.want {
			t.Errorf("prefixes %q: xattrs %s, want %s", tc.prefixes, got, tc.want)
		}
	}
}

func TestWriteCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Write(ctx, &bytes.Buffer{}, t.TempDir(), WriteOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestWriteOneFileSystem(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(src, "shm")
	for _, d := range []string{sub, filepath.Join(src, "plain")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "plain", "kept"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=1777"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sub, "inside"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	names := func(opts WriteOptions) []string {
		var buf bytes.Buffer
		if _, err := Write(context.Background(), &buf, src, opts); err != nil {
			t.Fatal(err)
		}
		var got []string
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return got
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s %o", h.Name, h.Mode))
		}
	}
	tests := []struct {
		one  bool
		want string
	}{
		{false, "./ 755|plain/ 755|plain/kept 644|shm/ 1777|shm/inside 644"},
		{true, "./ 755|plain/ 755|plain/kept 644|shm/ 1777"},
	}
	for _, tc := range tests {
		if got := strings.Join(names(WriteOptions{OneFileSystem: tc.one}), "|"); got != tc.want {
			t.Errorf("OneFileSystem %v: entries %s, want %s", tc.one, got, tc.want)
		}
	}
}
