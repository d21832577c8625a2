package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExtractRefusesUnsafeEntries(t *testing.T) {
	requireRoot(t)
	const canary = "ferry-archive-test-canary"
	tests := []struct {
		name    string
		entries func(outside string) []entry
	}{
		{"dotdot", func(string) []entry { return []entry{file("../x", "evil")} }},
		{"absolute dotdot", func(string) []entry { return []entry{file("/../../etc/x", "evil")} }},
		{"dotdot inside", func(string) []entry { return []entry{file("a/../../x", "evil")} }},
		{"dotdot dir", func(string) []entry { return []entry{dir("../outside/d/")} }},
		{"hardlink out", func(string) []entry { return []entry{hardlink("h", "../../etc/passwd")} }},
		{"hardlink absolute dotdot", func(string) []entry { return []entry{hardlink("h", "/../etc/passwd")} }},
		{"symlink up three", func(string) []entry { return []entry{symlink("a", "../../..")} }},
		{"symlink up from subdir", func(string) []entry { return []entry{dir("d/"), symlink("d/a", "../../x")} }},
		{"symlink down then up", func(string) []entry { return []entry{symlink("a", "b/../../x")} }},
		{"through absolute symlink", func(string) []entry {
			return []entry{symlink("a", "/etc"), file("a/"+canary, "evil")}
		}},
		{"through symlink to outside", func(o string) []entry {
			return []entry{symlink("a", o), file("a/x", "evil")}
		}},
		{"dir through symlink", func(o string) []entry {
			return []entry{symlink("a", o), dir("a/sub/")}
		}},
		{"through inner symlink", func(string) []entry {
			return []entry{dir("d/"), symlink("a", "d"), file("a/x", "evil")}
		}},
		{"symlink through symlink", func(o string) []entry {
			return []entry{symlink("a", o), symlink("a/b", "c")}
		}},
		{"hardlink through symlink", func(o string) []entry {
			return []entry{symlink("a", o), hardlink("h", "a/x")}
		}},
		{"whiteout through symlink", func(o string) []entry {
			return []entry{symlink("a", o), file("a/.wh.x", "")}
		}},
		{"file as parent", func(string) []entry { return []entry{file("f", "x"), file("f/x", "evil")} }},
		{"file names root", func(string) []entry { return []entry{file(".", "x")} }},
	}
	for _, tc := range tests {
		for _, mode := range []WhiteoutMode{WhiteoutsKeep, WhiteoutsOverlay} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				root, outside := sandbox(t)
				ents := tc.entries(outside)
				_, err := Extract(context.Background(), bytes.NewReader(tarOf(t, ents...)), root, ExtractOptions{Whiteouts: mode})
				if !errors.Is(err, ErrUnsafePath) {
					t.Fatalf("err = %v, want ErrUnsafePath", err)
				}
				last := ents[len(ents)-1].hdr.Name
				if !strings.Contains(err.Error(), last) {
					t.Errorf("error %q does not name the entry %q", err, last)
				}
				requireEmpty(t, outside)
				if _, err := os.Lstat("/etc/" + canary); err == nil {
					t.Fatalf("/etc/%s was created", canary)
				}
			})
		}
	}
}

// Later entries replace earlier ones, never writing through them.
func TestExtractReplacesWithoutFollowing(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries func(outside string) []entry
		check   string // path that must exist afterwards
		isDir   bool
	}{
		{"file over symlink", func(o string) []entry {
			return []entry{symlink("a", filepath.Join(o, "x")), file("a", "data")}
		}, "a", false},
		{"dir over symlink", func(o string) []entry { return []entry{symlink("a", o), dir("a/")} }, "a", true},
		{"dir over file", func(string) []entry { return []entry{file("a", "x"), dir("a/")} }, "a", true},
		{"file over dir", func(string) []entry { return []entry{dir("a/"), file("a/b", "x"), file("a", "y")} }, "a", false},
		{"file over hardlink", func(string) []entry {
			return []entry{file("f", "orig"), hardlink("h", "f"), file("h", "new")}
		}, "h", false},
		{"absolute symlink kept", func(string) []entry { return []entry{symlink("etc", "/etc")} }, "etc", false},
		{"relative symlink inside", func(string) []entry { return []entry{dir("d/"), symlink("d/a", "../x")} }, "d/a", false},
		{"absolute name", func(string) []entry { return []entry{file("/etc/x", "rooted")} }, "etc/x", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := sandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(tarOf(t, tc.entries(outside)...)), root, ExtractOptions{})
			if err != nil {
				t.Fatal(err)
			}
			requireEmpty(t, outside)
			fi, err := os.Lstat(filepath.Join(root, tc.check))
			if err != nil {
				t.Fatal(err)
			}
			if fi.IsDir() != tc.isDir {
				t.Fatalf("%s: dir = %v, want %v", tc.check, fi.IsDir(), tc.isDir)
			}
		})
	}
	t.Run("hardlink keeps original", func(t *testing.T) {
		root, _ := sandbox(t)
		ents := []entry{file("f", "orig"), hardlink("h", "f"), file("h", "new")}
		if _, err := Extract(context.Background(), bytes.NewReader(tarOf(t, ents...)), root, ExtractOptions{}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "f")); string(b) != "orig" {
			t.Fatalf("f = %q, want orig: the replacement wrote through the hard link", b)
		}
	})
}

func TestExtractTruncated(t *testing.T) {
	requireRoot(t)
	full := tarOf(t, dir("d/"), file("d/big", strings.Repeat("x", 3000)), file("d/after", "y"))
	cuts := []struct {
		name string
		at   int
	}{
		{"mid header", 512 + 100},
		{"mid body", 1024 + 1000},
		{"mid later header", 1024 + 3072 + 100},
	}
	for _, c := range cuts {
		t.Run(c.name, func(t *testing.T) {
			root, _ := sandbox(t)
			_, err := Extract(context.Background(), bytes.NewReader(full[:c.at]), root, ExtractOptions{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), "d/") {
				t.Errorf("error %q names no entry", err)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		root, _ := sandbox(t)
		_, err := Extract(context.Background(), strings.NewReader(strings.Repeat("not a tar ", 100)), root, ExtractOptions{})
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
	})
}

func TestExtractBounds(t *testing.T) {
	requireRoot(t)
	data := tarOf(t, dir("a/"), file("a/1", "0123456789"), file("a/2", "0123456789"), file("a/3", "x"))
	tests := []struct {
		name string
		opts ExtractOptions
		want error
	}{
		{"defaults", ExtractOptions{}, nil},
		{"bytes exact", ExtractOptions{MaxBytes: 21}, nil},
		{"bytes over", ExtractOptions{MaxBytes: 20}, ErrTooLarge},
		{"entries exact", ExtractOptions{MaxEntries: 4}, nil},
		{"entries over", ExtractOptions{MaxEntries: 3}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, _ := sandbox(t)
			st, err := Extract(context.Background(), bytes.NewReader(data), root, tc.opts)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && (st.Entries != 4 || st.Bytes != 21) {
				t.Fatalf("stats = %+v, want 4 entries, 21 bytes", st)
			}
		})
	}
}

func TestExtractCancelled(t *testing.T) {
	requireRoot(t)
	root, _ := sandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Extract(ctx, bytes.NewReader(tarOf(t, file("a", "x"))), root, ExtractOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	requireEmpty(t, root)
}

func TestExtractWhiteouts(t *testing.T) {
	requireRoot(t)
	layer := tarOf(t,
		dir("d/"), file("d/keep", "k"), file("d/.wh..wh..opq", ""),
		file(".wh.gone", ""), file("e/.wh.x", ""), file(".wh..wh.plnk", ""),
		withXattr(dir("r/"), "trusted.overlay.redirect", "/elsewhere"),
	)
	tests := []struct {
		mode      WhiteoutMode
		whiteouts bool // 0/0 devices and opaque xattr present
		raw       bool // .wh. files present as they were
	}{
		{WhiteoutsOverlay, true, false},
		{WhiteoutsDrop, false, false},
		{WhiteoutsKeep, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			root, _ := sandbox(t)
			if _, err := Extract(context.Background(), bytes.NewReader(layer), root, ExtractOptions{Whiteouts: tc.mode}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"gone", "e/x"} {
				if got := isWhiteout(filepath.Join(root, p)); got != tc.whiteouts {
					t.Errorf("%s is whiteout = %v, want %v", p, got, tc.whiteouts)
				}
			}
			if got := xattr(filepath.Join(root, "d"), opaqueXattr) == "y"; got != tc.whiteouts {
				t.Errorf("d opaque = %v, want %v", got, tc.whiteouts)
			}
			for _, p := range []string{".wh.gone", "d/.wh..wh..opq", "e/.wh.x"} {
				if got := exists(filepath.Join(root, p)); got != tc.raw {
					t.Errorf("%s exists = %v, want %v", p, got, tc.raw)
				}
			}
			if !exists(filepath.Join(root, "d/keep")) {
				t.Error("d/keep missing")
			}
			redirect := xattr(filepath.Join(root, "r"), "trusted.overlay.redirect") != ""
			if redirect != (tc.mode == WhiteoutsKeep) {
				t.Errorf("trusted.overlay.redirect restored = %v in mode %v", redirect, tc.mode)
			}
		})
	}
}

func isWhiteout(p string) bool {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func xattr(p, name string) string {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}
