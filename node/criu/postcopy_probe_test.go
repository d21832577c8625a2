package criu

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProbePostCopy runs the real probe: whatever its verdict, it must give one within its bound, with a reason
// when post-copy fails, and leave no process behind.
func TestProbePostCopy(t *testing.T) {
	requireCRIU(t)
	start := time.Now()
	res, err := ProbePostCopy(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("post-copy works=%v reason=%q took=%s", res.Works, res.Reason, res.Took)
	if time.Since(start) > 35*time.Second {
		t.Errorf("probe took %s, longer than its bound", time.Since(start))
	}
	if !res.Works && res.Reason == "" {
		t.Error("a failed probe must say why")
	}
	out, _ := exec.Command("pgrep", "-f", "sleep 600").Output()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("throw-away process left running: %s", s)
	}
}
