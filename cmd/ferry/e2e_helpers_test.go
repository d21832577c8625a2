package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the real ferry binary as an agent (runc, CRIU, overlayfs) and drive it through the
// command line, as a person would. They need root, runc, criu and busybox-static; outside CI they skip with a
// message saying what is missing, and with CI=true a missing prerequisite fails the run.

var (
	buildOnce sync.Once
	buildErr  error
	bins      struct{ dir, ferry, memload, image string }
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// requireHost checks the prerequisites of the end-to-end tests.
func requireHost(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"runc", "criu", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox (busybox-static)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (run scripts/install-deps.sh as root)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("end-to-end test %s; CI=true makes a missing prerequisite a failure", msg)
	}
	t.Skip("skipping end-to-end test: " + msg)
}

// build compiles ferry and memload once per test binary and makes the busybox test image with memload in it.
func build(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		bins.dir = dir
		bins.ferry, bins.memload = filepath.Join(dir, "ferry"), filepath.Join(dir, "memload")
		bins.image = filepath.Join(dir, "busybox.tar")
		steps := [][]string{
			{"go", "build", "-o", bins.ferry, "./cmd/ferry"},
			{"go", "build", "-o", bins.memload, "./cmd/memload"},
			{"bash", "scripts/busybox-image.sh", bins.image},
		}
		for _, s := range steps {
			cmd := exec.Command(s[0], s[1:]...)
			cmd.Dir = repoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "FERRY_IMAGE_EXTRA="+bins.memload+":/bin/memload")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building the test binaries: %v", buildErr)
	}
}

// testAgent is a ferry agent process started by a test.
type testAgent struct {
	t       *testing.T
	name    string
	dataDir string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	done    chan struct{}
	flags   []string // given to every start of `ferry agent`, after the usual ones
}

var agentSeq int
var agentSeqMu sync.Mutex

// startAgent starts `ferry agent` on a new data dir and registers its cleanup: every container it ran is
// removed, runc's records deleted, mounts undone and cgroups removed, even when the test failed.
func startAgent(t *testing.T, flags ...string) *testAgent {
	t.Helper()
	requireHost(t)
	build(t)
	agentSeqMu.Lock()
	agentSeq++
	name := fmt.Sprintf("e2e-%d-%d", os.Getpid()%10000, agentSeq)
	agentSeqMu.Unlock()
	dir, err := os.MkdirTemp("", "ferry-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{t: t, name: name, dataDir: dir, flags: flags}
	a.start()
	t.Cleanup(func() { a.cleanup() })
	return a
}

func (a *testAgent) start() {
	a.t.Helper()
	a.log = &bytes.Buffer{}
	a.cmd = exec.Command(bins.ferry, append([]string{"agent", "--name", a.name, "--data-dir", a.dataDir, "--bind", "127.0.0.1:0", "--fast-failover"}, a.flags...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", a.socket()); err == nil {
			c.Close()
			return
		}
		select {
		case <-a.done:
			a.t.Fatalf("agent exited at start:\n%s", a.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	a.t.Fatalf("agent did not serve its socket within 30s:\n%s", a.log.String())
}

func (a *testAgent) socket() string { return filepath.Join(a.dataDir, "ferry.sock") }

// kill ends the agent process at once (SIGKILL), as a crash would; its containers go on.
func (a *testAgent) kill() {
	_ = a.cmd.Process.Kill()
	<-a.done
}

// cleanup removes everything the agent made.
func (a *testAgent) cleanup() {
	if a.t.Failed() {
		a.t.Logf("agent %s log:\n%s", a.name, a.log.String())
	}
	select {
	case <-a.done:
	default:
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	}
	runcRoot := filepath.Join(a.dataDir, "runc")
	out, _ := exec.Command("runc", "--root", runcRoot, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		_ = exec.Command("runc", "--root", runcRoot, "kill", "--all", id, "KILL").Run()
		time.Sleep(100 * time.Millisecond)
		_ = exec.Command("runc", "--root", runcRoot, "delete", "--force", id).Run()
	}
	killShims(a.dataDir)
	unmountUnder(a.dataDir)
	removeCgroups(a.name)
	if err := os.RemoveAll(a.dataDir); err != nil {
		a.t.Logf("cleanup: %v", err)
	}
}

func killShims(dataDir string) {
	matches, _ := filepath.Glob(filepath.Join(dataDir, "containers", "*", "container.json"))
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		var pid int
		if i := bytes.Index(b, []byte(`"shim_pid": `)); i >= 0 {
			fmt.Sscanf(string(b[i+len(`"shim_pid": `):]), "%d", &pid)
		}
		if pid > 0 {
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmdline, []byte("shim")) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			targets = append(targets, fields[4])
		}
	}
	for i := len(targets) - 1; i >= 0; i-- {
		_ = syscall.Unmount(targets[i], syscall.MNT_DETACH)
	}
}

func removeCgroups(nodeName string) {
	for _, ctl := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified"} {
		base := filepath.Join("/sys/fs/cgroup", ctl, "ferry", nodeName)
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			if e.IsDir() {
				_ = os.Remove(filepath.Join(base, e.Name()))
			}
		}
		_ = os.Remove(base)
		_ = os.Remove(filepath.Dir(base)) // the shared /ferry parent, once no node uses it
	}
}

// result is one run of the command line.
type result struct {
	stdout, stderr string
	code           int
}

// ferry runs the command line against this agent.
func (a *testAgent) ferry(args ...string) result {
	a.t.Helper()
	return a.run(append(os.Environ(), "FERRY_ADDR=unix://"+a.socket()), args...)
}

// ferryNoAddr runs the command line without pointing it at this agent.
func (a *testAgent) ferryNoAddr(args ...string) result {
	a.t.Helper()
	return a.run(os.Environ(), args...)
}

func (a *testAgent) run(env []string, args ...string) result {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.ferry, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		a.t.Fatalf("running ferry %v: %v", args, err)
	}
	return r
}

// must runs the command line and fails the test unless it succeeds.
func (a *testAgent) must(args ...string) string {
	a.t.Helper()
	r := a.ferry(args...)
	if r.code != 0 {
		a.t.Fatalf("ferry %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs the command line, expects exit status code and a message containing want on stderr.
func (a *testAgent) fails(code int, want string, args ...string) result {
	a.t.Helper()
	r := a.ferry(args...)
	if r.code != code {
		a.t.Fatalf("ferry %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		a.t.Fatalf("ferry %s: stderr %q does not say %q", strings.Join(args, " "), r.stderr, want)
	}
	return r
}

// importBusybox imports the test image as "busybox".
func (a *testAgent) importBusybox() {
	a.t.Helper()
	a.must("image", "import", "busybox", bins.image)
}

// waitLog waits until the container's log has a line for which ok returns true, and returns the log's lines.
func (a *testAgent) waitLog(name string, timeout time.Duration, ok func(lines []string) bool) []string {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	var lines []string
	for time.Now().Before(deadline) {
		lines = strings.Split(strings.TrimSpace(a.must("logs", name)), "\n")
		if ok(lines) {
			return lines
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.t.Fatalf("log of %s did not reach the expected state within %s; last lines: %v", name, timeout, tail(lines, 5))
	return nil
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// bg is a command line run in the background.
type bg struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	errb *bytes.Buffer
	done chan error
}

// background starts the command line without waiting for it; the test's cleanup kills it if still running.
func (a *testAgent) background(args ...string) *bg {
	a.t.Helper()
	b := &bg{out: &bytes.Buffer{}, errb: &bytes.Buffer{}, done: make(chan error, 1)}
	b.cmd = exec.Command(bins.ferry, args...)
	b.cmd.Env = append(os.Environ(), "FERRY_ADDR=unix://"+a.socket())
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.errb
	if err := b.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	a.t.Cleanup(func() { _ = b.cmd.Process.Kill() })
	return b
}

// wait waits for the command to end by itself and returns its stdout.
func (b *bg) wait(timeout time.Duration) (string, error) {
	select {
	case err := <-b.done:
		if err != nil {
			return b.out.String(), fmt.Errorf("%v: %s", err, b.errb.String())
		}
		return b.out.String(), nil
	case <-time.After(timeout):
		_ = b.cmd.Process.Kill()
		return b.out.String(), fmt.Errorf("still running after %s", timeout)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
