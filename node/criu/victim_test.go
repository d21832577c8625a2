package criu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// startVictim starts a process for CRIU to dump (sleep, in a PID namespace of its own, in its own session)
// and returns its pid; the test's end kills it.
func startVictim(ctx context.Context, t *testing.T) int {
	t.Helper()
	sleepPath, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	victim := exec.Command("unshare", "--pid", "--fork", "--kill-child", "setsid", sleepPath, "600")
	victim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-victim.Process.Pid, syscall.SIGKILL); _ = victim.Wait() })
	pid, err := waitChild(ctx, victim.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// lazyRestore restores the checkpoint in images with `criu restore --lazy-pages` in work (where its daemon,
// or a relay to it, listens) and returns the restored process, which is killed when the test ends.
func lazyRestore(ctx context.Context, t *testing.T, images, work string) int {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "restored.pid")
	if out, err := exec.CommandContext(ctx, "criu", "restore", "-D", images, "-W", work, "--lazy-pages", "-d",
		"--pidfile", pidfile, "-o", "restore.log", "-v4").CombinedOutput(); err != nil {
		t.Fatalf("criu restore --lazy-pages: %v\n%s", err, out)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	restored, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() { _ = syscall.Kill(restored, syscall.SIGKILL) })
	return restored
}
