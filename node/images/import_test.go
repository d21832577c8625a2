package images

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// checkMerged mounts img's layers and checks what the two-layer fixture
// must look like: the whiteout deleted etc/gone, the opaque opq hides the
// lower layer's file.
func checkMerged(t *testing.T, s *Store, img *Image) {
	t.Helper()
	lower, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	root := mountOverlay(t, lower)
	for p, want := range map[string]bool{
		"etc/passwd": true, "etc/gone": false, "opq/upper": true, "opq/lower": false, "new": true, "bin/sh": true,
	} {
		_, err := os.Lstat(filepath.Join(root, p))
		if got := err == nil; got != want {
			t.Errorf("%s present = %v, want %v", p, got, want)
		}
	}
}

func TestImportMultiLayer(t *testing.T) {
	bottom, top := twoLayers(t)
	tests := []struct {
		name   string
		source string
		make   func(t *testing.T, dir string) string // returns the path to import
	}{
		{"docker dir", "docker-archive", func(t *testing.T, dir string) string {
			dockerDir(t, dir, bottom, top)
			return dir
		}},
		{"docker archive", "docker-archive", func(t *testing.T, dir string) string {
			dockerDir(t, dir, bottom, top)
			return archiveOf(t, dir, false)
		}},
		{"docker blobs archive", "docker-archive", func(t *testing.T, dir string) string {
			dockerBlobsDir(t, dir, bottom, top)
			return archiveOf(t, dir, false)
		}},
		{"oci layout", "oci-layout", func(t *testing.T, dir string) string {
			ociDir(t, dir, runtime.GOARCH, bottom, top)
			return dir
		}},
		{"oci archive gzip", "oci-archive", func(t *testing.T, dir string) string {
			ociDir(t, dir, runtime.GOARCH, bottom, top)
			return archiveOf(t, dir, true)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			path := tc.make(t, t.TempDir())
			img, err := s.Import(context.Background(), "app:v1", path, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{digestOf(bottom), digestOf(top)}
			if !slices.Equal(img.Layers, want) || img.Source != tc.source {
				t.Fatalf("layers %v source %s, want %v %s", img.Layers, img.Source, want, tc.source)
			}
			if img.Config.Cmd[0] != "/bin/sh" || img.Config.Env[0] != "PATH=/bin" || img.Size != int64(len(bottom)+len(top)) {
				t.Fatalf("config %+v size %d", img.Config, img.Size)
			}
			got, err := s.Get("app:v1")
			if err != nil || got.ID != img.ID {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			checkMerged(t, s, img)
			requireNoStaging(t, s)
		})
	}
}

// archiveOf tars dir into a file beside it, gzip-compressed if asked.
func archiveOf(t *testing.T, dir string, gz bool) string {
	data := tarDir(t, dir)
	if gz {
		data = gzipOf(t, data)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	writeFile(t, p, data)
	return p
}

func requireNoStaging(t *testing.T, s *Store) {
	t.Helper()
	if ents, _ := os.ReadDir(s.tmpDir()); len(ents) != 0 {
		t.Fatalf("staging left in %s: %s", s.tmpDir(), ents[0].Name())
	}
}

func TestImportRootfs(t *testing.T) {
	fs := tarOf(t, tf{name: "./"}, tf{name: "bin/"}, tf{name: "bin/sh", body: "#!"}, tf{name: "etc/"},
		tf{name: "etc/hostname", body: "box"}, tf{name: "lib", link: "/usr/lib"}, tf{name: ".wh.ignored"})
	tests := []struct {
		name, source string
		path         func(t *testing.T) string
		id           string // expected layer id, "" to skip the check
	}{
		{"plain tar", "rootfs-tar", func(t *testing.T) string { return fileOf(t, fs) }, digestOf(fs)},
		{"gzip tar", "rootfs-tar", func(t *testing.T) string { return fileOf(t, gzipOf(t, fs)) }, digestOf(fs)},
		{"zstd tar", "rootfs-tar", func(t *testing.T) string { return fileOf(t, zstdOf(t, fs)) }, digestOf(fs)},
		{"directory", "rootfs-dir", func(t *testing.T) string {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "bin/sh"), []byte("#!"))
			writeFile(t, filepath.Join(dir, "etc/hostname"), []byte("box"))
			if err := os.Symlink("/usr/lib", filepath.Join(dir, "lib")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			path := tc.path(t)
			var progress int64
			img, err := s.Import(context.Background(), "fs", path, func(n int64) { progress = n })
			if err != nil {
				t.Fatal(err)
			}
			if len(img.Layers) != 1 || img.Source != tc.source || (tc.id != "" && img.Layers[0] != tc.id) {
				t.Fatalf("image %+v, want one layer %s from %s", img, tc.id, tc.source)
			}
			if fi, _ := os.Stat(path); !fi.IsDir() && progress != fi.Size() {
				t.Errorf("progress ended at %d, want %d", progress, fi.Size())
			}
			layer := s.LayerPath(img.Layers[0])
			if b, err := os.ReadFile(filepath.Join(layer, "etc/hostname")); err != nil || string(b) != "box" {
				t.Fatalf("etc/hostname = %q, %v", b, err)
			}
			if target, _ := os.Readlink(filepath.Join(layer, "lib")); target != "/usr/lib" {
				t.Errorf("lib -> %q", target)
			}
			if _, err := os.Lstat(filepath.Join(layer, ".wh.ignored")); err == nil {
				t.Error("whiteout kept in a root file system")
			}
			if fi, _ := os.Stat(layer); fi.Mode().Perm() != 0o755 {
				t.Errorf("layer root mode %v, want 0755", fi.Mode().Perm())
			}

			// The same content again: same layer, kept in place.
			ino := inode(t, layer)
			again, err := s.Import(context.Background(), "fs2", path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.ID != img.ID || !slices.Equal(again.Layers, img.Layers) || inode(t, layer) != ino {
				t.Fatalf("second import: %+v, first %+v", again, img)
			}
			requireNoStaging(t, s)
		})
	}
}

func fileOf(t *testing.T, data []byte) string {
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	writeFile(t, p, data)
	return p
}

// Layers are extracted once, whichever image or format brings them.
func TestImportDedupe(t *testing.T) {
	bottom, top := twoLayers(t)
	s := newStore(t)
	docker, oci := t.TempDir(), t.TempDir()
	dockerDir(t, docker, bottom, top)
	ociDir(t, oci, runtime.GOARCH, bottom, top)
	ctx := context.Background()

	first, err := s.Import(ctx, "a", docker, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.layerExtractions.Load(); n != 2 {
		t.Fatalf("%d layer extractions, want 2", n)
	}
	ino := inode(t, s.LayerPath(first.Layers[1]))
	for _, src := range []string{docker, oci, archiveOf(t, oci, false)} {
		img, err := s.Import(ctx, "b", src, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(img.Layers, first.Layers) {
			t.Fatalf("layers %v, want %v", img.Layers, first.Layers)
		}
	}
	if n := s.layerExtractions.Load(); n != 2 {
		t.Fatalf("%d layer extractions after re-imports, want still 2", n)
	}
	if inode(t, s.LayerPath(first.Layers[1])) != ino {
		t.Fatal("layer directory was replaced")
	}
	ents, _ := os.ReadDir(s.layersDir())
	if len(ents) != 4 { // two directories, two records
		t.Fatalf("layers dir has %d entries, want 4", len(ents))
	}
}

func TestImportConcurrent(t *testing.T) {
	bottom, top := twoLayers(t)
	s := newStore(t)
	src := t.TempDir()
	ociDir(t, src, runtime.GOARCH, bottom, top)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Import(context.Background(), "img"+string(rune('a'+i)), src, nil)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := s.List()
	if err != nil || len(imgs) != len(errs) {
		t.Fatalf("List = %d images, %v", len(imgs), err)
	}
	checkMerged(t, s, imgs[0])
	requireNoStaging(t, s)
}
