package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// tf is one tar entry of a fixture: a directory if name ends in "/", a
// symlink if link is set, otherwise a regular file.
type tf struct {
	name, body, link string
}

var fixtureTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func tarOf(t testing.TB, entries ...tf) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: fixtureTime, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	// Stored blocks: the size depends only on the input's, so a tampered
	// layer of the same length gives a blob of the same size.
	zw, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdOf(t testing.TB, data []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(data, nil)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// twoLayers are the layers of the docker and OCI fixtures: the second
// deletes etc/gone (a whiteout) and makes opq opaque over the first.
func twoLayers(t testing.TB) (bottom, top []byte) {
	bottom = tarOf(t, tf{name: "etc/"}, tf{name: "etc/passwd", body: "root:x:0:0\n"}, tf{name: "etc/gone", body: "bye"},
		tf{name: "opq/"}, tf{name: "opq/lower", body: "hidden"}, tf{name: "bin/"}, tf{name: "bin/sh", body: "#!"})
	top = tarOf(t, tf{name: "etc/"}, tf{name: "etc/.wh.gone"}, tf{name: "opq/"}, tf{name: "opq/.wh..wh..opq"},
		tf{name: "opq/upper", body: "seen"}, tf{name: "new", body: "new file"})
	return bottom, top
}

func configJSON(t testing.TB, arch string, layers ...[]byte) []byte {
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, digestOf(l))
	}
	return mustJSON(t, map[string]any{
		"architecture": arch,
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/sh"}, "WorkingDir": "/"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
}

// dockerDir writes a classic `docker save` tree of layers into dir.
func dockerDir(t testing.TB, dir string, layers ...[]byte) {
	cfg := configJSON(t, runtime.GOARCH, layers...)
	cfgName := strings.TrimPrefix(digestOf(cfg), "sha256:") + ".json"
	writeFile(t, filepath.Join(dir, cfgName), cfg)
	var paths []string
	for i, l := range layers {
		p := filepath.Join("layer"+string(rune('a'+i)), "layer.tar")
		writeFile(t, filepath.Join(dir, p), l)
		paths = append(paths, p)
	}
	writeFile(t, filepath.Join(dir, "manifest.json"), mustJSON(t, []map[string]any{
		{"Config": cfgName, "RepoTags": []string{"app:latest"}, "Layers": paths},
	}))
}

// ociDir writes an OCI image layout of layers into dir, the first layer
// gzip-compressed and the others zstd-compressed, and returns the
// manifest's layer descriptors.
func ociDir(t testing.TB, dir string, arch string, layers ...[]byte) []ociDescriptor {
	blob := func(data []byte, mt string) ociDescriptor {
		d := ociDescriptor{MediaType: mt, Digest: digestOf(data), Size: int64(len(data))}
		writeFile(t, filepath.Join(dir, blobPath(d.Digest)), data)
		return d
	}
	var descs []ociDescriptor
	for i, l := range layers {
		if i == 0 {
			descs = append(descs, blob(gzipOf(t, l), "application/vnd.oci.image.layer.v1.tar+gzip"))
		} else {
			descs = append(descs, blob(zstdOf(t, l), "application/vnd.oci.image.layer.v1.tar+zstd"))
		}
	}
	cfg := blob(configJSON(t, arch, layers...), "application/vnd.oci.image.config.v1+json")
	man := blob(mustJSON(t, ociManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Config: cfg, Layers: descs}), "application/vnd.oci.image.manifest.v1+json")
	man.Platform = &ociPlatform{OS: "linux", Architecture: arch}
	writeFile(t, filepath.Join(dir, "index.json"), mustJSON(t, ociIndex{SchemaVersion: 2, Manifests: []ociDescriptor{man}}))
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return descs
}

// tarDir makes a tar of the regular files and directories under dir.
func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var entries []tf
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			entries = append(entries, tf{name: rel + "/"})
			return nil
		}
		b, err := os.ReadFile(p)
		entries = append(entries, tf{name: rel, body: string(b)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tarOf(t, entries...)
}

func newStore(t testing.TB) *Store {
	t.Helper()
	requireRoot(t)
	s, err := Open(filepath.Join(t.TempDir(), "store"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testLogger logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
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

// requireClean checks that the store holds no image, no layer and no staging.
func requireClean(t testing.TB, s *Store) {
	t.Helper()
	for _, d := range []string{s.imagesDir(), s.layersDir(), s.tmpDir()} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Fatalf("%s is not empty: %s ...", d, ents[0].Name())
		}
	}
}

// mountOverlay mounts the layer directories (top first) read-only as an
// overlay and returns the mount point; it is unmounted at cleanup.
func mountOverlay(t testing.TB, lower []string) string {
	t.Helper()
	target := t.TempDir()
	if err := unix.Mount("overlay", target, "overlay", 0, "lowerdir="+strings.Join(lower, ":")); err != nil {
		if os.Getenv("CI") != "true" && (err == unix.EPERM || err == unix.ENODEV) {
			t.Skipf("cannot mount overlayfs here: %v", err)
		}
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
	return target
}

func inode(t testing.TB, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// dockerBlobsDir writes a `docker save` tree in the OCI-shaped layout of
// Docker 25 and later (without its oci-layout, so the docker path reads it).
func dockerBlobsDir(t testing.TB, dir string, layers ...[]byte) {
	cfg := configJSON(t, runtime.GOARCH, layers...)
	cfgPath := blobPath(digestOf(cfg))
	writeFile(t, filepath.Join(dir, cfgPath), cfg)
	var paths []string
	for _, l := range layers {
		p := blobPath(digestOf(l))
		writeFile(t, filepath.Join(dir, p), l)
		paths = append(paths, p)
	}
	writeFile(t, filepath.Join(dir, "manifest.json"), mustJSON(t, []map[string]any{
		{"Config": cfgPath, "RepoTags": []string{"app:latest"}, "Layers": paths},
	}))
}
