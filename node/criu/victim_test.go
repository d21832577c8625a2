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
	// Not --kill-child: the parent-death signal it sets would be restored by CRIU with the process, which
	// would then die as soon as the restoring CRIU exits.
	victim := exec.Command("unshare", "--pid", "--fork", "setsid", sleepPath, "600")
	victim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	pid, err := waitChild(ctx, victim.Process.Pid)
	t.Cleanup(func() {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL) // the namespace's first process: the namespace ends with it
		}
		_ = syscall.Kill(-victim.Process.Pid, syscall.SIGKILL)
		_ = victim.Wait()
	})
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// runsOn fails the test unless process pid exists and is not a zombie (a process that was killed but not
// yet reaped still answers signal 0).
func runsOn(t *testing.T, pid int, when string) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("%s: the restored process %d is gone: %v", when, pid, err)
	}
	// The state follows the command's closing parenthesis.
	if i := strings.LastIndexByte(string(b), ')'); i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X' {
		t.Fatalf("%s: the restored process %d has ended: %s", when, pid, b)
	}
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
