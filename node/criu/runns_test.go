package criu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestStartWithRunBindsDirOnRunOnlyForTheChild(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (mount namespaces) and CI=true is set")
		}
		t.Skip("needs root (mount namespaces)")
	}
	dir := t.TempDir()
	marker := "ferry-run-test-" + filepath.Base(dir)
	if err := os.WriteFile(filepath.Join(dir, marker), []byte("inside"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the thread that made the namespace is gone: a second start makes its own
		cmd := exec.Command("cat", "/run/"+marker)
		var out strings.Builder
		cmd.Stdout = &out
		if err := StartWithRun(cmd, dir); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if err := cmd.Wait(); err != nil || out.String() != "inside" {
			t.Fatalf("start %d: the child saw %q (%v), want the file of the bound directory", i, out.String(), err)
		}
	}
	if _, err := os.Stat("/run/" + marker); !os.IsNotExist(err) {
		t.Fatalf("the bind on /run reached this process's namespace: %v", err)
	}
	// This goroutine's thread is still in the host's namespace.
	if b, err := exec.Command("cat", "/proc/self/mountinfo").Output(); err != nil || strings.Contains(string(b), dir) {
		t.Fatalf("a child started normally sees the bound directory (%v)", err)
	}
}
