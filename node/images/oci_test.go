package images

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestPickManifest(t *testing.T) {
	desc := func(name, os, arch string) ociDescriptor {
		d := ociDescriptor{Digest: "sha256:" + strings.Repeat(name, 64)}
		if os != "" {
			d.Platform = &ociPlatform{OS: os, Architecture: arch}
		}
		return d
	}
	other := "arm64"
	if runtime.GOARCH == other {
		other = "amd64"
	}
	tests := []struct {
		name  string
		descs []ociDescriptor
		want  string // first letter of the chosen digest; "" for an error
	}{
		{"host among others", []ociDescriptor{desc("a", "linux", other), desc("b", "linux", runtime.GOARCH)}, "b"},
		{"no platforms: first", []ociDescriptor{desc("a", "", ""), desc("b", "", "")}, "a"},
		{"attestation skipped", []ociDescriptor{desc("a", "unknown", "unknown"), desc("b", "", "")}, "b"},
		{"other platform only", []ociDescriptor{desc("a", "linux", other)}, ""},
		{"windows only", []ociDescriptor{desc("a", "windows", runtime.GOARCH)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := pickManifest(tc.descs, "index.json")
			if tc.want == "" {
				if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "linux/"+runtime.GOARCH) {
					t.Fatalf("err = %v, want ErrBadArchive naming the platform", err)
				}
				return
			}
			if err != nil || d.Digest[len("sha256:")] != tc.want[0] {
				t.Fatalf("picked %s, %v; want %s", d.Digest, err, tc.want)
			}
		})
	}
}
