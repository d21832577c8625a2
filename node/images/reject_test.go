package images

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/node/archive"
)

// Every refused import leaves the store as it was: no record, no layer,
// no staging.
func TestImportRefused(t *testing.T) {
	bottom, top := twoLayers(t)
	evil := tarOf(t, tf{name: "ok", body: "x"}, tf{name: "../escape", body: "evil"})
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	tests := []struct {
		name  string
		path  func(t *testing.T) string
		want  error
		names string // the error must contain this
	}{
		{"rootfs dotdot", func(t *testing.T) string { return fileOf(t, evil) }, archive.ErrUnsafePath, "../escape"},
		{"rootfs gzip dotdot", func(t *testing.T) string { return fileOf(t, gzipOf(t, evil)) }, archive.ErrUnsafePath, "../escape"},
		{"rootfs truncated", func(t *testing.T) string {
			return fileOf(t, bottom[:700])
		}, archive.ErrCorrupt, "etc/"},
		{"gzip truncated", func(t *testing.T) string {
			z := gzipOf(t, bottom)
			return fileOf(t, z[:len(z)-20])
		}, archive.ErrCorrupt, "rootfs.tar"},
		{"xz", func(t *testing.T) string {
			return fileOf(t, append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, bottom...))
		}, ErrBadArchive, "xz"},
		{"docker layer dotdot", func(t *testing.T) string {
			dir := t.TempDir()
			dockerDir(t, dir, bottom, evil)
			return archiveOf(t, dir, false)
		}, archive.ErrUnsafePath, "../escape"},
		{"docker wrong diff_id", func(t *testing.T) string {
			dir := t.TempDir()
			dockerDir(t, dir, bottom, top)
			writeFile(t, filepath.Join(dir, "layerb/layer.tar"), tarOf(t, tf{name: "other", body: "x"}))
			return dir
		}, ErrBadArchive, "layerb/layer.tar"},
		{"docker empty manifest", func(t *testing.T) string {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "manifest.json"), []byte("[]"))
			return dir
		}, ErrBadArchive, "no images"},
		{"docker layer path escapes", func(t *testing.T) string {
			dir := t.TempDir()
			dockerDir(t, dir, bottom)
			m := strings.ReplaceAll(string(readFile(t, filepath.Join(dir, "manifest.json"))), "layera/layer.tar", "../layer.tar")
			writeFile(t, filepath.Join(dir, "manifest.json"), []byte(m))
			return dir
		}, ErrBadArchive, "../layer.tar"},
		{"docker layer symlink out", func(t *testing.T) string {
			dir := t.TempDir()
			dockerDir(t, dir, bottom)
			p := filepath.Join(dir, "layera/layer.tar")
			os.Remove(p)
			if err := os.Symlink("/etc/passwd", p); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ErrBadArchive, "layera/layer.tar"},
		{"docker config tampered", func(t *testing.T) string {
			dir := t.TempDir()
			dockerDir(t, dir, bottom)
			cfgs, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			for _, c := range cfgs {
				if filepath.Base(c) != "manifest.json" {
					writeFile(t, c, []byte(strings.Replace(string(readFile(t, c)), "/bin/sh", "/bin/xx", 1)))
				}
			}
			return dir
		}, ErrBadArchive, "content hashes to"},
		{"oci layer blob tampered", func(t *testing.T) string {
			dir := t.TempDir()
			descs := ociDir(t, dir, runtime.GOARCH, bottom, top)
			writeFile(t, filepath.Join(dir, blobPath(descs[0].Digest)), gzipOf(t, tampered(bottom)))
			return dir
		}, ErrBadArchive, "blob " + digestOf(gzipOf(t, bottom)) + ": content hashes to"},
		{"oci archive layer blob tampered", func(t *testing.T) string {
			dir := t.TempDir()
			descs := ociDir(t, dir, runtime.GOARCH, bottom, top)
			writeFile(t, filepath.Join(dir, blobPath(descs[0].Digest)), gzipOf(t, tampered(bottom)))
			return archiveOf(t, dir, true)
		}, ErrBadArchive, "blob " + digestOf(gzipOf(t, bottom)) + ": content hashes to"},
		{"oci layer blob wrong size", func(t *testing.T) string {
			dir := t.TempDir()
			descs := ociDir(t, dir, runtime.GOARCH, bottom, top)
			writeFile(t, filepath.Join(dir, blobPath(descs[1].Digest)), zstdOf(t, tarOf(t, tf{name: "x"})))
			return dir
		}, ErrBadArchive, "blob " + digestOf(zstdOf(t, top)) + " is"},
		{"oci blob missing", func(t *testing.T) string {
			dir := t.TempDir()
			descs := ociDir(t, dir, runtime.GOARCH, bottom, top)
			os.Remove(filepath.Join(dir, blobPath(descs[1].Digest)))
			return dir
		}, ErrBadArchive, "blobs/sha256/"},
		{"oci other platform only", func(t *testing.T) string {
			dir := t.TempDir()
			ociDir(t, dir, otherArch, bottom, top)
			return dir
		}, ErrBadArchive, "linux/" + runtime.GOARCH},
		{"oci layer dotdot", func(t *testing.T) string {
			dir := t.TempDir()
			ociDir(t, dir, runtime.GOARCH, bottom, evil)
			return archiveOf(t, dir, false)
		}, archive.ErrUnsafePath, "../escape"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Import(context.Background(), "app", tc.path(t), nil)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadArchive) {
				t.Fatalf("err = %v, want %v and ErrBadArchive", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.names) {
				t.Errorf("error %q does not name %q", err, tc.names)
			}
			requireClean(t, s)
		})
	}
}

// tampered changes one byte of a file's content in the bottom layer: the
// tar stays valid and the same size, only the digests change.
func tampered(layer []byte) []byte {
	return bytes.Replace(layer, []byte("root:x:0:0"), []byte("root:y:0:0"), 1)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportBounds(t *testing.T) {
	s := newStore(t)
	s.maxBytes = 10
	_, err := s.Import(context.Background(), "big", fileOf(t, tarOf(t, tf{name: "f", body: strings.Repeat("x", 11)})), nil)
	if !errors.Is(err, archive.ErrTooLarge) || !errors.Is(err, ErrBadArchive) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	requireClean(t, s)
}

func TestImportCancelled(t *testing.T) {
	bottom, top := twoLayers(t)
	s := newStore(t)
	dir := t.TempDir()
	ociDir(t, dir, runtime.GOARCH, bottom, top)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Import(ctx, "app", dir, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	requireClean(t, s)
}
