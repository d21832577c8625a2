package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFreezeCgroupFiles(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string // relative to the cgroup root
		path    string
		wantErr error
		check   map[string]string // file -> content after freezing
	}{
		{name: "v1 freezer", files: map[string]string{"freezer/ferry/n1/c/freezer.state": "THAWED\n"}, path: "/ferry/n1/c",
			check: map[string]string{"freezer/ferry/n1/c/freezer.state": "FROZEN"}},
		{name: "v2 freeze", files: map[string]string{"ferry/n1/c/cgroup.freeze": "0\n", "ferry/n1/c/cgroup.events": "populated 1\nfrozen 1\n"},
			path: "/ferry/n1/c", check: map[string]string{"ferry/n1/c/cgroup.freeze": "1"}},
		{name: "no freezer", files: map[string]string{"ferry/n1/c/cgroup.procs": ""}, path: "/ferry/n1/c", wantErr: ErrNoFreezer},
		{name: "relative path", path: "ferry/n1/c", wantErr: ErrNoFreezer},
		{name: "escaping path", path: "/ferry/../../etc", wantErr: ErrNoFreezer},
		{name: "empty path", path: "", wantErr: ErrNoFreezer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			old := cgroupRoot
			cgroupRoot = root
			t.Cleanup(func() { cgroupRoot = old })
			for rel, content := range tt.files {
				p := filepath.Join(root, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := FreezeCgroup(context.Background(), tt.path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FreezeCgroup(%q) = %v, want %v", tt.path, err, tt.wantErr)
			}
			for rel, want := range tt.check {
				if b, _ := os.ReadFile(filepath.Join(root, rel)); string(b) != want {
					t.Errorf("%s = %q after freezing, want %q", rel, b, want)
				}
			}
			if tt.wantErr == nil {
				if err := ThawCgroup(tt.path); err != nil {
					t.Fatalf("ThawCgroup: %v", err)
				}
			}
		})
	}
}
