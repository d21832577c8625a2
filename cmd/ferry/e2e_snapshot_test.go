package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/api"
)

// chatLog appends a line to a file in its writable layer and prints its counter, ten times a second.
const chatLog = `i=0; while true; do i=$((i+1)); echo "line $i" >> /chat.log; echo $i; sleep 0.1; done`

// numbers returns the numbers a counter printed, in order (other lines are skipped).
func numbers(lines []string) []int {
	var out []int
	for _, l := range lines {
		if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// contiguous fails unless ns counts up by one.
func contiguous(t *testing.T, what string, ns []int) {
	t.Helper()
	for i := 1; i < len(ns); i++ {
		if ns[i] != ns[i-1]+1 {
			t.Fatalf("%s: %d follows %d: %v", what, ns[i], ns[i-1], ns)
		}
	}
}

// snapshotID takes a snapshot through host and returns its ID and record.
func (c *devCluster) snapshot(host string, args ...string) api.SnapshotView {
	c.t.Helper()
	var res api.SnapshotResult
	out := c.must(host, append([]string{"snapshot", "create", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Snapshot.ID == "" {
		c.t.Fatalf("snapshot create %v: %v\n%s", args, err, out)
	}
	return res.Snapshot
}

func (c *devCluster) snapshots(host, container string) []api.SnapshotView {
	c.t.Helper()
	var out []api.SnapshotView
	if err := json.Unmarshal([]byte(c.must(host, "snapshot", "ls", container, "-o", "json")), &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *devCluster) clone(host string, args ...string) api.CloneResult {
	c.t.Helper()
	var res api.CloneResult
	out := c.must(host, append([]string{"clone", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		c.t.Fatalf("clone %v: %v\n%s", args, err, out)
	}
	return res
}

// processIn returns the pid of the process named comm that works in dir (its cwd).
func processIn(t *testing.T, dir, comm string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink("/proc/" + de.Name() + "/cwd")
		b, _ := os.ReadFile("/proc/" + de.Name() + "/comm")
		if cwd == dir && strings.TrimSpace(string(b)) == comm {
			return pid
		}
	}
	t.Fatalf("no %s process works in %s", comm, dir)
	return 0
}

// counterFrom waits until container name has printed a few numbers and returns them.
func (c *devCluster) counterFrom(host, name string, atLeast int) []int {
	c.t.Helper()
	var ns []int
	c.eventually(name+" counting", 30*time.Second, func() bool {
		ns = numbers(c.logLines(host, name))
		return len(ns) >= atLeast
	})
	return ns
}

// pidNS is the PID namespace of a process.
func pidNS(t *testing.T, pid int) string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatalf("pid namespace of %d: %v", pid, err)
	}
	return ns
}

// checkClones checks that every clone runs on its node in its own PID namespace and that each counts on from
// the same number, independently.
func (c *devCluster) checkClones(host string, res api.CloneResult, count int, nodes []string) {
	t := c.t
	t.Helper()
	if len(res.Clones) != count || len(res.Failed) > 0 {
		t.Fatalf("%d clones started, want %d; failed: %v", len(res.Clones), count, res.Failed)
	}
	seen := map[string]bool{}
	namespaces := map[string]string{}
	first := -1
	for _, cl := range res.Clones {
		ct := c.only(host, cl.Container)
		if ct.State != "running" || ct.Node != cl.Node {
			t.Fatalf("clone %s is %s on %s (reported on %s)", cl.Container, ct.State, ct.Node, cl.Node)
		}
		seen[ct.Node] = true
		ns := pidNS(t, ct.Pid)
		if other, dup := namespaces[ns]; dup {
			t.Fatalf("clones %s and %s share PID namespace %s", other, cl.Container, ns)
		}
		namespaces[ns] = cl.Container
		got := c.counterFrom(host, cl.Container, 5)
		contiguous(t, "clone "+cl.Container, got)
		if first == -1 {
			first = got[0]
		}
		if got[0] != first && got[0] != first+1 && got[0]+1 != first {
			t.Fatalf("clone %s starts at %d, another at %d: they should go on from the same number", cl.Container, got[0], first)
		}
	}
	for _, n := range nodes {
		if !seen[n] {
			t.Fatalf("no clone on %s: %+v", n, res.Clones)
		}
	}
	t.Logf("%d clones on %v, each in its own PID namespace, each counting on from %d; took %s", count, nodes, first, res.Took)
}

// asOperator runs the command line over SSH against addr with an operator key, with its own HOME.
func asOperator(t *testing.T, home, addr string, k operatorKey, args ...string) result {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if key, _, _ := strings.Cut(kv, "="); key != "HOME" && key != "XDG_CONFIG_HOME" && key != "SSH_AUTH_SOCK" && !strings.HasPrefix(key, "FERRY_") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command(bins.ferry, args...)
	cmd.Env = append(env, "HOME="+home, "FERRY_ADDR=ssh://"+addr, "FERRY_IDENTITY="+k.priv)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// startAgentAgain starts the agent of host again after killAgent, the way dev-cluster.sh starts it.
func (c *devCluster) startAgentAgain(host string) {
	c.t.Helper()
	i := strings.TrimPrefix(host, c.prefix+"-")
	addr := fmt.Sprintf("10.79.%d.1%s:7400", c.seq, i)
	args := []string{filepath.Join(repoRoot(), "scripts", "provision.sh"), "--name", host, "--bind", addr,
		"--data-dir", filepath.Join(c.dir, host), "--binary", bins.ferry, "--netns", host,
		"--log", filepath.Join(c.dir, host+".log"), "--token-file", filepath.Join(c.dir, "token"), "--", "--fast-failover"}
	cmd := exec.Command("bash", args...)
	cmd.Env = c.env
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("starting %s again: %v\n%s", host, err, out)
	}
	c.eventually(host+" alive again", 30*time.Second, func() bool {
		r := c.on(host, "node", "ls", "-o", "json")
		var nodes []api.NodeView
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &nodes) == nil && statusOf(nodes, host) == "alive"
	})
}

func TestSnapshots(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2, h3 := c.host(1), c.host(2), c.host(3)
	c.must(h1, "image", "import", "busybox", bins.image)
	c.must(h1, "run", "--name", "chat", "--node", h1, "busybox", "--", "sh", "-c", chatLog)
	c.counterFrom(h1, "chat", 10)
	var good api.SnapshotView // a snapshot of chat that later subtests clone

	t.Run("chat log: a load takes memory and files back to the snapshot", func(t *testing.T) {
		// Files in the container's own tmpfs (/dev, /dev/shm) are part of its state too; the agent carries
		// them beside CRIU's images.
		c.must(h1, "exec", "chat", "--", "sh", "-c", "echo at-snapshot > /dev/shm/state && mkdir /dev/own && echo mine > /dev/own/f")
		good = c.snapshot(h1, "chat")
		if good.Node != h1 || len(good.Copies) != 1 || good.Copies[0] == h1 {
			t.Fatalf("snapshot on %s with copies %v, want on %s with one copy elsewhere", good.Node, good.Copies, h1)
		}
		if _, err := os.Stat(filepath.Join(c.dir, good.Copies[0], "snapshots", good.ID, "manifest.json")); err != nil {
			t.Fatalf("the copy on %s: %v", good.Copies[0], err)
		}
		// The container deletes its lines and counts on.
		c.must(h1, "exec", "chat", "--", "sh", "-c", ": > /chat.log; echo later > /dev/shm/state; rm -r /dev/own")
		before := c.counterFrom(h1, "chat", 1)
		c.counterFrom(h1, "chat", len(before)+20)
		if out := c.must(h1, "exec", "chat", "--", "head", "-1", "/chat.log"); strings.TrimSpace(out) == "line 1" {
			t.Fatalf("the file was not emptied: %q", out)
		}
		out := c.must(h2, "snapshot", "load", "chat", good.ID) // asked through another node
		if !strings.Contains(out, "back at snapshot "+good.ID) {
			t.Fatalf("snapshot load printed: %s", out)
		}
		all := c.counterFrom(h1, "chat", len(before)+25)
		// The counter falls back once, to where it was at the snapshot, and goes on from there.
		drop := -1
		for i := 1; i < len(all); i++ {
			if all[i] < all[i-1] {
				if drop != -1 {
					t.Fatalf("the counter fell back twice: %v", all)
				}
				drop = i
			}
		}
		if drop == -1 || all[drop-1]-all[drop] < 10 {
			t.Fatalf("the counter did not go back to the snapshot: %v", all)
		}
		after := all[drop:]
		contiguous(t, "counter after the load", after)
		file := strings.Split(strings.TrimSpace(c.must(h1, "exec", "chat", "--", "cat", "/chat.log")), "\n")
		for i, l := range file {
			if l != fmt.Sprintf("line %d", i+1) {
				t.Fatalf("line %d of the file after the load is %q: %v", i+1, l, file)
			}
		}
		if len(file) < after[0]-1 {
			t.Fatalf("the file has %d lines, the counter went on from %d", len(file), after[0])
		}
		tmpfs := c.must(h1, "exec", "chat", "--", "sh", "-c",
			"cat /dev/shm/state /dev/own/f; ls -l /dev/null; grep -E ' /dev(/shm)? ' /proc/self/mountinfo")
		for _, want := range []string{"at-snapshot\nmine\n", "1,   3", " /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755",
			" /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k"} {
			if !strings.Contains(tmpfs, want) {
				t.Fatalf("after the load, /dev and /dev/shm lack %q:\n%s", want, tmpfs)
			}
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mi, []byte("restore-tmpfs")) {
			t.Fatalf("a restore left a tmpfs mounted on the host:\n%s", mi)
		}
		t.Logf("counter at %d before the load, %d after it (the snapshot's); the file's %d lines are back", all[drop-1], after[0], len(file))
	})

	t.Run("a viewer can neither create nor load a snapshot", func(t *testing.T) {
		keys := t.TempDir()
		view := newOperatorKey(t, keys, "vic")
		c.must(h1, "operator", "add", "--role", "viewer", view.pub)
		addr := ""
		for _, n := range c.nodes(h1) {
			if n.Name == h1 {
				addr = n.Addr
			}
		}
		home := t.TempDir()
		if r := asOperator(t, home, addr, view, "snapshot", "ls", "chat"); r.code != 0 || !strings.Contains(r.stdout, good.ID) {
			t.Fatalf("a viewer lists snapshots: exit %d %s %s", r.code, r.stdout, r.stderr)
		}
		for _, args := range [][]string{{"snapshot", "create", "chat"}, {"snapshot", "load", "chat", good.ID},
			{"snapshot", "rm", "chat", good.ID}, {"clone", "chat"}, {"template", "create", "vt", "--from", "chat"}} {
			refused(t, asOperator(t, home, addr, view, args...), "viewer: "+strings.Join(args, " "), "forbidden", "viewer")
		}
		if n := len(c.snapshots(h1, "chat")); n != 1 {
			t.Fatalf("after the viewer's attempts there are %d snapshots of chat, want 1", n)
		}
	})

	t.Run("a snapshot with a corrupted file is refused and the container is untouched", func(t *testing.T) {
		bad := c.snapshot(h1, "chat", "--copies", "0")
		pages, _ := filepath.Glob(filepath.Join(c.dir, h1, "snapshots", bad.ID, "images", "pages-*.img"))
		if len(pages) == 0 {
			t.Fatal("the snapshot has no pages image")
		}
		flip(t, pages[0], 100)
		pid := c.only(h1, "chat").Pid
		n := len(c.counterFrom(h1, "chat", 1))
		r := c.on(h1, "snapshot", "load", "chat", bad.ID)
		refused(t, r, "load of a corrupted snapshot", "rejected", "pages-", "the container was not touched")
		if ct := c.only(h1, "chat"); ct.State != "running" || ct.Pid != pid {
			t.Fatalf("after the refused load chat is %s with pid %d, was running with %d", ct.State, ct.Pid, pid)
		}
		ns := c.counterFrom(h1, "chat", n+10)
		contiguous(t, "counter across the refused load", ns[n-1:])
		for _, s := range c.snapshots(h1, "chat") {
			if s.ID == bad.ID && !s.Bad {
				t.Fatalf("the corrupted snapshot is not marked bad: %+v", s)
			}
		}
		refused(t, c.on(h1, "snapshot", "load", "chat", bad.ID), "second load of a bad snapshot", "marked bad")
		c.must(h1, "snapshot", "rm", "chat", bad.ID)
		if _, err := os.Stat(filepath.Join(c.dir, h1, "snapshots", bad.ID)); !os.IsNotExist(err) {
			t.Fatalf("snapshot rm left its data: %v", err)
		}
	})

	t.Run("loaded on a node whose copy is corrupted, the container running elsewhere is untouched", func(t *testing.T) {
		sn := c.snapshot(h1, "chat") // kept on h1 and copied to one other node
		if len(sn.Copies) != 1 || sn.Copies[0] == h1 {
			t.Fatalf("snapshot with copies %v, want one on another node than %s", sn.Copies, h1)
		}
		other := sn.Copies[0]
		pages, _ := filepath.Glob(filepath.Join(c.dir, other, "snapshots", sn.ID, "images", "pages-*.img"))
		if len(pages) == 0 {
			t.Fatalf("the copy on %s has no pages image", other)
		}
		flip(t, pages[0], 100)
		pid := c.only(h1, "chat").Pid
		n := len(c.counterFrom(h1, "chat", 1))
		r := c.on(h1, "snapshot", "load", "chat", sn.ID, "--node", other)
		refused(t, r, "load on a node whose copy is corrupted", "rejected", "before stopping chat", "chat was not touched")
		if ct := c.only(h1, "chat"); ct.State != "running" || ct.Pid != pid || ct.Node != h1 {
			t.Fatalf("after the refused load chat is %s on %s with pid %d, was running on %s with %d", ct.State, ct.Node, ct.Pid, h1, pid)
		}
		contiguous(t, "counter across the refused load", c.counterFrom(h1, "chat", n+10)[n-1:])
		for _, s := range c.snapshots(h1, "chat") {
			if s.ID == sn.ID && !s.Bad {
				t.Fatalf("the snapshot whose copy failed its checksums is not marked bad: %+v", s)
			}
		}
		c.must(h1, "snapshot", "rm", "chat", sn.ID)
	})

	t.Run("five clones of one snapshot on one node", func(t *testing.T) {
		res := c.clone(h1, "--snapshot", good.ID, "--count", "5", "--node", h1, "--name-prefix", "one")
		c.checkClones(h1, res, 5, []string{h1})
		for _, cl := range res.Clones {
			c.must(h1, "rm", "--force", cl.Container)
		}
	})

	t.Run("five clones across three hosts", func(t *testing.T) {
		res := c.clone(h2, "--snapshot", good.ID, "--count", "5", "--spread", "--name-prefix", "sp")
		c.checkClones(h1, res, 5, []string{h1, h2, h3})
		var sv api.SnapshotView
		for _, s := range c.snapshots(h1, "chat") {
			if s.ID == good.ID {
				sv = s
			}
		}
		if holders := append([]string{sv.Node}, sv.Copies...); !slices.Contains(holders, h2) || !slices.Contains(holders, h3) {
			t.Fatalf("the snapshot is not cached on every node that ran a clone: %v", holders)
		}
		for _, cl := range res.Clones {
			c.must(h1, "rm", "--force", cl.Container)
		}
	})

	t.Run("a clone on a node whose copy of the snapshot fails is not left placed", func(t *testing.T) {
		fresh := c.snapshot(h1, "chat", "--copies", "0")
		// The long hold keeps a clone's lazy-pages daemon waiting for the last step below.
		c.restartAgent(h3, "--fault", "refuse-snapshot-copies", "--lazy-hold", "30s")
		faulty := true
		defer func() {
			if faulty {
				c.restartAgent(h3) // the later steps need it whole
			}
		}()
		r := c.on(h1, "clone", "--snapshot", fresh.ID, "--node", h3, "--name-prefix", "refused")
		refused(t, r, "clone to a node that refuses the copy", "sending snapshot "+fresh.ID+" to "+h3, "refuses copies")
		c.eventually("the refused clone's placement removed", 10*time.Second, func() bool {
			for _, ct := range c.containers(h1) {
				if strings.HasPrefix(ct.Container.Config.Name, "refused") {
					t.Logf("still listed: %s on %s (%s)", ct.Container.Config.Name, ct.Node, ct.State)
					return false
				}
			}
			return true
		})
		for _, s := range c.snapshots(h1, "chat") {
			if s.ID == fresh.ID && slices.Contains(s.Copies, h3) {
				t.Fatalf("the refused copy is recorded on %s: %+v", h3, s)
			}
		}
		if _, err := os.Stat(filepath.Join(c.dir, h3, "snapshots", fresh.ID)); !os.IsNotExist(err) {
			t.Fatalf("%s holds the refused copy: %v", h3, err)
		}

		// A clone whose lazy-pages daemon dies before every page is in is stopped, not left running on
		// memory that reads as zeros where pages were missing; its record says why.
		torn := c.clone(h1, "--snapshot", good.ID, "--node", h3, "--name-prefix", "torn")
		name := torn.Clones[0].Container
		daemon := processIn(t, filepath.Join(c.dir, h3, "containers", name, "restore-work"), "criu")
		if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.eventually(name+" stopped after its daemon died", 20*time.Second, func() bool {
			ct := c.only(h1, name)
			return ct.State != "running" && strings.Contains(ct.Note, "lazy-pages daemon ended")
		})
		c.must(h1, "rm", "--force", name)

		// An agent restarted while the daemons of its clones still copy (held back by the long hold) adopts
		// them: a daemon killed while no agent watched is found out by its log, and its clone stopped; the
		// other clone runs on, and its record drops the daemon once it has copied every page in.
		held := c.clone(h1, "--snapshot", good.ID, "--node", h3, "--name-prefix", "held", "--count", "2")
		torn2, whole := held.Clones[0].Container, held.Clones[1].Container
		daemon = processIn(t, filepath.Join(c.dir, h3, "containers", torn2, "restore-work"), "criu")
		if ct := c.only(h1, whole); ct.Lazy == nil || ct.Lazy.Pid <= 0 {
			t.Fatalf("%s's record does not name the daemon still copying its memory in: %+v", whole, ct.Container)
		}
		c.killAgent(h3)
		if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.startAgent(h3) // whole again: no fault, the default hold
		faulty = false
		c.eventually(torn2+", whose daemon died while no agent watched, stopped", 30*time.Second, func() bool {
			ct := c.only(h1, torn2)
			return ct.State != "running" && strings.Contains(ct.Note, "lazy-pages daemon ended")
		})
		c.eventually(whole+" running whole once its adopted daemon is done", 90*time.Second, func() bool {
			ct := c.only(h1, whole)
			return ct.State == "running" && ct.Lazy == nil
		})
		if ct := c.only(h1, whole); ct.Note != "" {
			t.Fatalf("%s has a note after its daemon finished: %q", whole, ct.Note)
		}
		c.must(h1, "exec", whole, "--", "true")
		for _, n := range []string{torn2, whole} {
			c.must(h1, "rm", "--force", n)
		}

		res := c.clone(h1, "--snapshot", fresh.ID, "--node", h3, "--name-prefix", "accepted")
		c.checkClones(h1, res, 1, []string{h3})
		c.must(h1, "rm", "--force", res.Clones[0].Container)
		c.must(h1, "snapshot", "rm", "chat", fresh.ID)
	})

	t.Run("a template's clones work after the source container is removed", func(t *testing.T) {
		out := c.must(h1, "template", "create", "chatter", "--from", "chat")
		if !strings.Contains(out, "template chatter") {
			t.Fatalf("template create printed: %s", out)
		}
		c.must(h1, "rm", "--force", "chat")
		res := c.clone(h1, "chatter", "--count", "2", "--node", h3)
		c.checkClones(h1, res, 2, []string{h3})
		res = c.clone(h1, "--snapshot", good.ID, "--node", h2, "--name-prefix", "late")
		c.checkClones(h1, res, 1, []string{h2})
	})

	t.Run("periodic snapshots keep the newest N", func(t *testing.T) {
		c.must(h1, "run", "--name", "tick", "--node", h3, "--snapshot-every", "5s", "--keep", "2", "busybox", "--", "sh", "-c", numberPrinter)
		var first []api.SnapshotView
		c.eventually("two periodic snapshots", 40*time.Second, func() bool { first = c.snapshots(h1, "tick"); return len(first) >= 2 })
		c.eventually("the oldest periodic snapshot dropped", 40*time.Second, func() bool {
			now := c.snapshots(h1, "tick")
			return len(now) == 2 && now[0].ID != first[0].ID
		})
		for _, s := range c.snapshots(h1, "tick") {
			if !s.Auto || len(s.Copies) != 1 {
				t.Fatalf("periodic snapshot %+v: want auto with one copy", s)
			}
		}
		if _, err := os.Stat(filepath.Join(c.dir, h3, "snapshots", first[0].ID)); !os.IsNotExist(err) {
			t.Fatalf("the dropped snapshot's data is still on %s: %v", h3, err)
		}
		c.must(h1, "rm", "--force", "tick")
	})

	t.Run("loaded on another node, a container moves there and runs in one place", func(t *testing.T) {
		c.must(h1, "run", "--name", "mover", "--node", h1, "busybox", "--", "sh", "-c", chatLog)
		c.counterFrom(h1, "mover", 10)
		sn := c.snapshot(h1, "mover", "--copies", "0")
		var res api.LoadSnapshotResult
		if err := json.Unmarshal([]byte(c.must(h2, "snapshot", "load", "mover", sn.ID, "--node", h3, "-o", "json")), &res); err != nil {
			t.Fatal(err)
		}
		if res.Node != h3 || res.MovedFrom != h1 {
			t.Fatalf("loaded on %s from %q, want on %s from %s", res.Node, res.MovedFrom, h3, h1)
		}
		// Stopped on h1 before the load; its left-over record there is removed by h1's agent.
		c.eventually("mover gone from "+h1, 30*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(c.dir, h1, "containers", "mover"))
			return os.IsNotExist(err)
		})
		if ct := c.only(h1, "mover"); ct.Node != h3 || ct.State != "running" {
			t.Fatalf("mover is %s on %s after the load", ct.State, ct.Node)
		}
		contiguous(t, "mover on "+h3, c.counterFrom(h1, "mover", 5))
		c.must(h1, "rm", "--force", "mover")
	})

	t.Run("a node holding a snapshot goes down: the snapshot is listed and loads from its other copy", func(t *testing.T) {
		c.must(h1, "run", "--name", "far", "--node", h2, "busybox", "--", "sh", "-c", chatLog)
		c.counterFrom(h1, "far", 10)
		sn := c.snapshot(h1, "far")
		if len(sn.Copies) != 1 || sn.Copies[0] == h2 {
			t.Fatalf("snapshot of far has copies %v", sn.Copies)
		}
		at := c.counterFrom(h1, "far", 1)
		c.killAgent(h2)
		c.eventually(h2+" dead", 30*time.Second, func() bool { return statusOf(c.nodes(h1), h2) == "dead" })
		if list := c.snapshots(h1, "far"); len(list) != 1 || list[0].ID != sn.ID {
			t.Fatalf("with %s down, snapshot ls far lists %+v", h2, list)
		}
		var res api.LoadSnapshotResult
		if err := json.Unmarshal([]byte(c.must(h1, "snapshot", "load", "far", sn.ID, "-o", "json")), &res); err != nil {
			t.Fatal(err)
		}
		if res.Node != sn.Copies[0] || res.MovedFrom != h2 {
			t.Fatalf("loaded on %s (moved from %q), want on %s from %s", res.Node, res.MovedFrom, sn.Copies[0], h2)
		}
		if ct := c.only(h1, "far"); ct.Node != res.Node || ct.State != "running" {
			t.Fatalf("far is %s on %s after the load", ct.State, ct.Node)
		}
		got := c.counterFrom(h1, "far", 5)
		contiguous(t, "far on "+res.Node, got)
		if got[0] > at[len(at)-1]+1 {
			t.Fatalf("far went on from %d on %s; it was at %d before the snapshot's node went down", got[0], res.Node, at[len(at)-1])
		}
		t.Logf("%s down; far loaded from the copy on %s in %s, counting on from %d", h2, res.Node, res.Took, got[0])

		// h2 comes back with its old copy of far still running: its agent removes it, so that far runs in one place.
		if _, err := os.Stat(filepath.Join(c.dir, h2, "containers", "far")); err != nil {
			t.Fatalf("the old copy of far on %s is not there to test with: %v", h2, err)
		}
		c.startAgentAgain(h2)
		c.eventually("the old copy of far removed from "+h2, 30*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(c.dir, h2, "containers", "far"))
			return os.IsNotExist(err)
		})
		if ct := c.only(h2, "far"); ct.Node != res.Node || ct.State != "running" {
			t.Fatalf("after %s came back far is %s on %s", h2, ct.State, ct.Node)
		}
	})
}
