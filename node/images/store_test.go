package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"app:v1", true},
		{"a.b-c_d", true},
		{"0abc:Latest_1.2", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"App", false},
		{".x", false},
		{"-x", false},
		{"x/y", false},
		{"../x", false},
		{"x:", false},
		{"x::y", false},
		{"x:-bad", false},
		{"x:" + strings.Repeat("t", 129), false},
		{"x y", false},
	}
	for _, tc := range tests {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidName)) {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestStoreRejectsBadNames(t *testing.T) {
	s := newStore(t)
	path := fileOf(t, tarOf(t, tf{name: "f", body: "x"}))
	if _, err := s.Import(context.Background(), "../evil", path, nil); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Import: %v", err)
	}
	if _, err := s.Get("Bad"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Get: %v", err)
	}
	if err := s.Remove("a/b"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Remove: %v", err)
	}
	requireClean(t, s)
}

func TestStoreRecords(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Get("nope"); !errors.Is(err, ErrUnknownImage) || !strings.Contains(err.Error(), "ferry image import") {
		t.Fatalf("Get unknown: %v", err)
	}
	if err := s.Remove("nope"); !errors.Is(err, ErrUnknownImage) {
		t.Fatalf("Remove unknown: %v", err)
	}
	one := fileOf(t, tarOf(t, tf{name: "f", body: "1"}))
	two := fileOf(t, tarOf(t, tf{name: "f", body: "2"}))
	for _, name := range []string{"zeta", "alpha:v2", "mid"} {
		if _, err := s.Import(ctx, name, one, nil); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	if !slices.Equal(names, []string{"alpha:v2", "mid", "zeta"}) {
		t.Fatalf("List = %v", names)
	}

	// Importing over a name replaces the record; the old layer stays.
	old, _ := s.Get("mid")
	img, err := s.Import(ctx, "mid", two, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get("mid"); got.ID != img.ID || got.ID == old.ID {
		t.Fatalf("record not replaced: %s, old %s", got.ID, old.ID)
	}
	if !s.HasLayer(old.Layers[0]) {
		t.Fatal("old layer removed")
	}

	if err := s.Remove("mid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("mid"); !errors.Is(err, ErrUnknownImage) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if !s.HasLayer(img.Layers[0]) {
		t.Fatal("Remove deleted a layer")
	}
}

func TestLayerDirs(t *testing.T) {
	bottom, top := twoLayers(t)
	s := newStore(t)
	dir := t.TempDir()
	ociDir(t, dir, runtime.GOARCH, bottom, top)
	img, err := s.Import(context.Background(), "app", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{s.LayerPath(digestOf(top)), s.LayerPath(digestOf(bottom))}
	if !slices.Equal(dirs, want) {
		t.Fatalf("LayerDirs = %v, want top first %v", dirs, want)
	}
	if err := os.RemoveAll(want[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LayerDirs(img); !errors.Is(err, ErrMissingLayer) {
		t.Fatalf("LayerDirs with a layer gone: %v", err)
	}
	for _, id := range []string{"", "sha256:xyz", "md5:" + strings.Repeat("a", 64), "../" + digestOf(top)} {
		if s.LayerPath(id) != "" || s.HasLayer(id) {
			t.Errorf("LayerPath(%q) = %q", id, s.LayerPath(id))
		}
	}
}

func TestOpenClearsStaging(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.tmpDir(), "import-123", "etc", "x"), []byte("left over"))
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	requireClean(t, s)
}
