package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCriuConfig(t *testing.T) {
	tests := []struct {
		name, net, tmpfsDir string
		want, wantNot       []string
	}{
		{name: "private net, own tmpfs", net: NetNone, tmpfsDir: "/d/c/restore-tmpfs",
			want: []string{"network-lock skip", "external mnt[/proc/acpi]:ferry-mask", "external mnt[ferry-mask]:/m",
				"external mnt[/dev]:ferry-dev", "external mnt[ferry-dev]:/d/c/restore-tmpfs/ferry-dev",
				"external mnt[/dev/shm]:ferry-shm", "external mnt[ferry-shm]:/d/c/restore-tmpfs/ferry-shm"}},
		{name: "host net", net: NetHost, tmpfsDir: "/d/c/restore-tmpfs",
			want: []string{"external mnt[/dev]:ferry-dev"}, wantNot: []string{"network-lock"}},
		{name: "no own tmpfs", net: NetNone,
			want: []string{"network-lock skip", "external mnt[ferry-mask]:/m"}, wantNot: []string{"ferry-dev", "ferry-shm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CriuConfig(tt.net, "/m", tt.tmpfsDir)
			lines := strings.Split(strings.TrimSpace(got), "\n")
			has := map[string]bool{}
			for _, l := range lines {
				has[l] = true
			}
			for _, w := range tt.want {
				if !has[w] {
					t.Errorf("missing line %q in:\n%s", w, got)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("has %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestTmpfsMountOptions(t *testing.T) {
	tests := []struct {
		opts  []string
		flags uintptr
		data  string
	}{
		{OwnTmpfs[0].Options, unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
		{OwnTmpfs[1].Options, unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV, "mode=1777,size=65536k"},
		{nil, 0, ""},
	}
	for _, tt := range tests {
		flags, data := Tmpfs{Options: tt.opts}.mount()
		if flags != tt.flags || data != tt.data {
			t.Errorf("%q: flags %#x data %q, want %#x %q", tt.opts, flags, data, tt.flags, tt.data)
		}
	}
	// The spec mounts them as the restore does.
	mounts := map[string]bool{}
	for _, m := range defaultMounts() {
		mounts[m.Destination+" "+m.Source+" "+strings.Join(m.Options, ",")] = true
	}
	for _, o := range OwnTmpfs {
		if !mounts[o.Destination+" "+o.Source+" "+strings.Join(o.Options, ",")] {
			t.Errorf("the spec does not mount %s as %v", o.Destination, o.Options)
		}
	}
}

func TestTmpfsMountAndUnmount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "restore-tmpfs")
	t.Cleanup(func() { _ = UnmountOwnTmpfs(dir) })
	for _, o := range OwnTmpfs {
		if err := o.Mount(dir); err != nil {
			t.Fatal(err)
		}
		if err := o.Mount(dir); err != nil { // again: the first is detached
			t.Fatal(err)
		}
		if !IsMounted(o.Dir(dir)) {
			t.Fatalf("%s not mounted", o.Dir(dir))
		}
		if err := os.WriteFile(filepath.Join(o.Dir(dir), "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if n := strings.Count(string(mi), dir+"/"); n != len(OwnTmpfs) {
		t.Errorf("%d mounts under %s, want %d", n, dir, len(OwnTmpfs))
	}
	if err := UnmountOwnTmpfs(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", dir, err)
	}
	mi, _ = os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("mounts left under %s", dir)
	}
}
