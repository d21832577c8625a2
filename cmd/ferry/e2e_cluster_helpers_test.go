package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/api"
)

// devCluster is a cluster of agents on network-namespace hosts, made with scripts/dev-cluster.sh (the same
// script people use), with its own names, subnet and directory so that it never meets a developer's cluster.
type devCluster struct {
	t      *testing.T
	seq    int
	prefix string
	dir    string
	env    []string
}

// clusterSeq numbers the dev clusters of this test process: hosts feN-1.., bridge feNbr, network 10.79.N.
// FERRY_E2E_SEQ_BASE shifts the numbering so that two test processes can run side by side.
var clusterSeq = func() int {
	n, _ := strconv.Atoi(os.Getenv("FERRY_E2E_SEQ_BASE"))
	return n
}()

// startDevCluster brings up n hosts PREFIX-1..n and registers `dev-cluster.sh down` as cleanup.
func startDevCluster(t *testing.T, n int) *devCluster {
	t.Helper()
	requireHost(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("needs ip (iproute2): %v", err)
	}
	build(t)
	clusterSeq++
	c := &devCluster{t: t, seq: clusterSeq, prefix: fmt.Sprintf("fe%d", clusterSeq), dir: filepath.Join(os.TempDir(), fmt.Sprintf("ferry-e2e-cluster-%d-%d", os.Getpid(), clusterSeq))}
	c.env = append(os.Environ(),
		"FERRY_DEV_HOSTS="+fmt.Sprint(n), "FERRY_DEV_PREFIX="+c.prefix, "FERRY_DEV_NET=10.79."+fmt.Sprint(clusterSeq),
		"FERRY_DEV_BRIDGE="+c.prefix+"br", "FERRY_DEV_DIR="+c.dir, "FERRY_BIN="+bins.ferry,
		"FERRY_DEV_AGENT_FLAGS=--fast-failover")
	t.Cleanup(func() {
		if t.Failed() {
			for i := 1; i <= n; i++ {
				b, _ := os.ReadFile(filepath.Join(c.dir, c.host(i)+".log"))
				t.Logf("log of %s (last 4 KiB):\n%s", c.host(i), lastBytes(b, 4096))
			}
		}
		if out, err := c.script("down"); err != nil {
			t.Logf("dev-cluster.sh down: %v\n%s", err, out)
		}
	})
	if out, err := c.script("up"); err != nil {
		t.Fatalf("dev-cluster.sh up: %v\n%s", err, out)
	}
	return c
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (c *devCluster) script(arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(), "scripts", "dev-cluster.sh"), arg)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *devCluster) host(i int) string { return fmt.Sprintf("%s-%d", c.prefix, i) }

func (c *devCluster) socket(host string) string { return filepath.Join(c.dir, host, "ferry.sock") }

// on runs the command line against the agent of host.
func (c *devCluster) on(host string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.ferry, append([]string{"--addr", "unix://" + c.socket(host)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("running ferry: %v", err)
	}
	return r
}

func (c *devCluster) must(host string, args ...string) string {
	c.t.Helper()
	r := c.on(host, args...)
	if r.code != 0 {
		c.t.Fatalf("ferry %s (on %s): exit %d\n%s%s", strings.Join(args, " "), host, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (c *devCluster) nodes(host string) []api.NodeView {
	c.t.Helper()
	var out []api.NodeView
	if err := json.Unmarshal([]byte(c.must(host, "node", "ls", "-o", "json")), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *devCluster) containers(host string) []api.ContainerView {
	c.t.Helper()
	var out []api.ContainerView
	if err := json.Unmarshal([]byte(c.must(host, "ps", "-o", "json")), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// eventually retries cond until it holds or timeout passes.
func (c *devCluster) eventually(what string, timeout time.Duration, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%s: not within %s", what, timeout)
	return 0
}

// leader returns the name of the leader as host sees it ("" if none).
func (c *devCluster) leader(host string) string {
	r := c.on(host, "node", "ls", "-o", "json")
	var out []api.NodeView
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
		return ""
	}
	for _, n := range out {
		if n.RaftRole == "leader" {
			return n.Name
		}
	}
	return ""
}

// killAgent kills the agent of host at once (SIGKILL), as a crash would.
func (c *devCluster) killAgent(host string) {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, host+".pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatalf("killing the agent of %s (pid %d): %v", host, pid, err)
	}
	for i := 0; i < 50 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie, dead but not yet reaped by its new parent, does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// link sets the host side of host's network link up or down.
func (c *devCluster) link(host string, up bool) {
	c.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	veth := "fv-" + strings.ReplaceAll(host, "-", "")
	if out, err := exec.Command("ip", "link", "set", veth, state).CombinedOutput(); err != nil {
		c.t.Fatalf("ip link set %s %s: %v %s", veth, state, err, out)
	}
}

func statusOf(nodes []api.NodeView, name string) string {
	for _, n := range nodes {
		if n.Name == name {
			return n.Status
		}
	}
	return ""
}

// restartAgent kills host's agent and starts it again (the same way dev-cluster.sh does) with extra flags,
// e.g. a fault to inject. Its containers keep running meanwhile.
func (c *devCluster) restartAgent(host string, flags ...string) {
	c.t.Helper()
	c.killAgent(host)
	c.startAgent(host, flags...)
}

// startAgent starts host's agent (the same way dev-cluster.sh does) with extra flags, and waits until it is
// alive in the cluster.
func (c *devCluster) startAgent(host string, flags ...string) {
	c.t.Helper()
	i := strings.TrimPrefix(host, c.prefix+"-")
	addr := fmt.Sprintf("10.79.%d.1%s:7400", c.seq, i)
	args := []string{filepath.Join(repoRoot(), "scripts", "provision.sh"), "--name", host, "--bind", addr,
		"--data-dir", filepath.Join(c.dir, host), "--binary", bins.ferry, "--netns", host,
		"--log", filepath.Join(c.dir, host+".log"), "--token-file", filepath.Join(c.dir, "token"), "--", "--fast-failover"}
	cmd := exec.Command("bash", append(args, flags...)...)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("restarting %s: %v\n%s", host, err, out)
	}
	c.eventually(host+" alive after its restart", 30*time.Second, func() bool {
		var nodes []api.NodeView
		r := c.on(host, "node", "ls", "-o", "json")
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &nodes) == nil && statusOf(nodes, host) == "alive" && c.leader(host) != ""
	})
}

// background runs the command line against host without waiting; lines of its stderr go to the channel.
func (c *devCluster) background(host string, args ...string) (*bg, <-chan string) {
	c.t.Helper()
	b := &bg{out: &bytes.Buffer{}, errb: &bytes.Buffer{}, done: make(chan error, 1)}
	b.cmd = exec.Command(bins.ferry, append([]string{"--addr", "unix://" + c.socket(host)}, args...)...)
	b.cmd.Stdout = b.out
	pr, pw := io.Pipe()
	b.cmd.Stderr = io.MultiWriter(b.errb, pw)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	if err := b.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait(); pw.Close() }()
	c.t.Cleanup(func() { _ = b.cmd.Process.Kill() })
	return b, lines
}

// waitLine waits for a line containing s.
func waitLine(t *testing.T, lines <-chan string, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no line saying %q within %s", s, timeout)
		}
	}
}

// only returns the one container named name that ps on host lists, failing if there is not exactly one.
func (c *devCluster) only(host, name string) api.ContainerView {
	c.t.Helper()
	var found []api.ContainerView
	for _, ct := range c.containers(host) {
		if ct.Config.Name == name {
			found = append(found, ct)
		}
	}
	if len(found) != 1 {
		c.t.Fatalf("ps lists %d containers named %s, want exactly one: %+v", len(found), name, found)
	}
	return found[0]
}

// logLines returns a container's log lines, through host.
func (c *devCluster) logLines(host, name string) []string {
	c.t.Helper()
	return strings.Split(strings.TrimSpace(c.must(host, "logs", name)), "\n")
}
