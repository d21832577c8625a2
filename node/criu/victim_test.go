package criu

import (
	"context"
	"os/exec"
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
