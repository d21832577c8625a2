package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestBuildSpec(t *testing.T) {
	tests := []struct {
		name      string
		cfg       SpecConfig
		wantNetNS bool
		wantLimit int64
	}{
		{"none", SpecConfig{Net: NetNone, MemoryBytes: 64 << 20}, true, 64 << 20},
		{"default is none", SpecConfig{}, true, 0},
		{"host", SpecConfig{Net: NetHost}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BuildSpec(tt.cfg).Annotations["org.criu.config"]; got != "" {
				t.Errorf("CRIU configuration %q without one asked for", got)
			}
			tt.cfg.CriuConfig = "/d/criu.conf"
			if got := BuildSpec(tt.cfg).Annotations["org.criu.config"]; got != "/d/criu.conf" {
				t.Errorf("CRIU configuration %q, want /d/criu.conf", got)
			}
			tt.cfg.Args, tt.cfg.CgroupsPath, tt.cfg.RootfsPath = []string{"sh"}, "/ferry/vg-1/np", "/r"
			tt.cfg.Env = []string{"PATH=/bin", "FOO=bar"}
			s := BuildSpec(tt.cfg)
			hasNet := slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
			if hasNet != tt.wantNetNS {
				t.Errorf("network namespace: %v, want %v", hasNet, tt.wantNetNS)
			}
			if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace }) {
				t.Error("no PID namespace: restore on the same kernel would collide")
			}
			var limit int64
			if s.Linux.Resources.Memory != nil {
				limit = *s.Linux.Resources.Memory.Limit
			}
			if limit != tt.wantLimit {
				t.Errorf("memory limit %d, want %d", limit, tt.wantLimit)
			}
			if s.Linux.CgroupsPath != "/ferry/vg-1/np" {
				t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
			}
			if !slices.Contains(s.Process.Env, "PATH=/bin") || !slices.Contains(s.Process.Env, "HOME=/root") || !slices.Contains(s.Process.Env, "FOO=bar") {
				t.Errorf("env %v: the container's PATH must override the default and HOME stay", s.Process.Env)
			}
		})
	}
}

func TestWriteBundle(t *testing.T) {
	dir := t.TempDir()
	if err := WriteBundle(dir, BuildSpec(SpecConfig{Args: []string{"true"}})); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil || s.Process.Args[0] != "true" {
		t.Fatalf("config.json: %v %+v", err, s.Process)
	}
}

func TestLastRuncMessage(t *testing.T) {
	tests := map[string]string{
		`{"level":"error","msg":"container \"x\" does not exist","time":"..."}`: `container "x" does not exist`,
		"time=\"...\" level=error msg=\"boom\"\n":                               `time="..." level=error msg="boom"`,
		"": "",
	}
	for in, want := range tests {
		if got := lastRuncMessage(in); got != want {
			t.Errorf("lastRuncMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
