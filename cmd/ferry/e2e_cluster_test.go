package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/api"
)

func TestClusterOnNamespacedHosts(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2, h3 := c.host(1), c.host(2), c.host(3)

	t.Run("three agents form a cluster", func(t *testing.T) {
		nodes := c.nodes(h1)
		if len(nodes) != 3 {
			t.Fatalf("node ls lists %d nodes, want 3: %+v", len(nodes), nodes)
		}
		roles := map[string]int{}
		for _, n := range nodes {
			if n.Status != "alive" || !n.Eligible {
				t.Errorf("node %s is %s (eligible %v), want alive and eligible", n.Name, n.Status, n.Eligible)
			}
			roles[n.RaftRole]++
		}
		if roles["leader"] != 1 || roles["voter"] != 2 {
			t.Fatalf("raft roles %v, want one leader and two voters", roles)
		}
	})

	for _, h := range []string{h1, h2, h3} {
		c.must(h, "image", "import", "busybox", bins.image)
	}
	var placed []string
	t.Run("ferry run lands on a node", func(t *testing.T) {
		for _, name := range []string{"np-a", "np-b", "np-c"} {
			c.must(h2, "run", "--name", name, "busybox", "--", "sh", "-c", numberPrinter)
		}
		c.must(h1, "run", "--name", "pinned", "--node", h3, "busybox", "--", "sleep", "1000")
		for _, ct := range c.containers(h3) {
			if ct.State != "running" || !ct.Reachable {
				t.Errorf("container %s on %s is %s", ct.Config.Name, ct.Node, ct.State)
			}
			if ct.Config.Name == "pinned" && ct.Node != h3 {
				t.Errorf("pinned container landed on %s, want %s", ct.Node, h3)
			}
			placed = append(placed, ct.Node)
		}
		if len(placed) != 4 {
			t.Fatalf("ps lists %d containers, want 4", len(placed))
		}
		spread := map[string]bool{}
		for _, n := range placed[:3] {
			spread[n] = true
		}
		if len(spread) < 2 {
			t.Errorf("three unpinned containers all landed on %v; the scheduler should spread them", placed)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		before := len(c.containers(h1))
		if r := c.on(h1, "run", "--name", "x", "--node", "nosuch", "busybox", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
			t.Fatalf("run on an unknown node: exit %d, %q", r.code, r.stderr)
		}
		if r := c.on(h2, "stop", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, `no container named "nosuch"`) {
			t.Fatalf("stop of an unknown container: exit %d, %q", r.code, r.stderr)
		}
		if r := c.on(h2, "run", "--name", "np-a", "busybox", "--", "true"); r.code != 1 || !strings.Contains(r.stderr, "np-a") {
			t.Fatalf("run with a taken name: exit %d, %q", r.code, r.stderr)
		}
		if r := c.on(h1, "node", "info", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "nosuch") {
			t.Fatalf("node info of an unknown node: exit %d, %q", r.code, r.stderr)
		}
		if after := len(c.containers(h1)); after != before {
			t.Fatalf("refused commands changed the state: %d containers, then %d", before, after)
		}
	})

	t.Run("joining with a wrong token or address is refused", func(t *testing.T) {
		dir := t.TempDir()
		r := runFerry(t, "agent", "--name", "intruder", "--data-dir", filepath.Join(dir, "a"), "--bind", "127.0.0.1:0",
			"--join", "10.79.1.11:7400", "--token", "ferry1.AAAA")
		if r.code == 0 || !strings.Contains(r.stderr, "token") {
			t.Fatalf("join with a bad token: exit %d, %q", r.code, r.stderr)
		}
		tok := strings.TrimSpace(c.must(h1, "cluster", "token"))
		r = runFerry(t, "agent", "--name", "lost", "--data-dir", filepath.Join(dir, "b"), "--bind", "127.0.0.1:0",
			"--join", "127.0.0.1:1", "--token", tok)
		if r.code == 0 || !strings.Contains(r.stderr, "check the address") {
			t.Fatalf("join through a wrong address: exit %d, %q", r.code, r.stderr)
		}
		if got := len(c.nodes(h1)); got != 3 {
			t.Fatalf("a refused join changed the cluster: %d nodes", got)
		}
	})

	t.Run("the leader's loss elects a new one and ps still answers", func(t *testing.T) {
		var old string
		c.eventually("all three agents agree on the leader", 20*time.Second, func() bool {
			old = c.leader(h1)
			return old != "" && c.leader(h2) == old && c.leader(h3) == old
		})
		c.killAgent(old)
		var other string
		for _, h := range []string{h1, h2, h3} {
			if h != old {
				other = h
				break
			}
		}
		took := c.eventually("a new leader", 20*time.Second, func() bool {
			l := c.leader(other)
			return l != "" && l != old
		})
		t.Logf("agent of the leader %s killed: %s has a new leader after %s", old, other, took.Round(10*time.Millisecond))
		list := c.containers(other)
		if len(list) != 4 {
			t.Fatalf("ps on %s lists %d containers after the failover, want 4", other, len(list))
		}
		c.must(other, "run", "--name", "after-failover", "busybox", "--", "sleep", "1000")

		// The killed agent, restarted with its data dir, rejoins without a new bootstrap.
		if out, err := c.script("up"); err != nil {
			t.Fatalf("restarting %s: %v\n%s", old, err, out)
		}
		c.eventually(old+" alive again as a voter", 30*time.Second, func() bool {
			for _, n := range c.nodes(other) {
				if n.Name == old {
					return n.Status == "alive" && (n.RaftRole == "voter" || n.RaftRole == "leader")
				}
			}
			return false
		})
		log, _ := os.ReadFile(filepath.Join(c.dir, old+".log"))
		if strings.Count(string(log), "made a new cluster") > 1 || strings.Count(string(log), "joined the cluster") > 1 {
			t.Fatalf("%s made or joined a cluster again on restart", old)
		}
		if got := c.containers(old); len(got) != 5 {
			t.Fatalf("the restarted agent's ps lists %d containers, want 5", len(got))
		}
	})

	t.Run("a cut link makes a host suspect then dead, and alive again", func(t *testing.T) {
		watcher := h1
		if c.leader(h1) == h3 {
			watcher = h2
		}
		c.link(h3, false)
		seen := map[string]bool{}
		c.eventually(h3+" dead", 30*time.Second, func() bool {
			st := statusOf(c.nodes(watcher), h3)
			seen[st] = true
			return st == "dead"
		})
		if !seen["suspect"] {
			t.Logf("note: %s went to dead without being seen suspect (polling every 200ms): %v", h3, seen)
		}
		for _, ct := range c.containers(watcher) {
			if ct.Node == h3 && ct.Reachable {
				t.Errorf("container %s on the cut-off %s reported reachable", ct.Config.Name, h3)
			}
		}
		c.link(h3, true)
		c.eventually(h3+" alive again", 60*time.Second, func() bool { return statusOf(c.nodes(watcher), h3) == "alive" })
		var on3 []string
		for _, ct := range c.containers(watcher) {
			if ct.Node == h3 {
				if !ct.Reachable || ct.State != "running" {
					t.Errorf("after the link came back, %s on %s is %s (reachable %v)", ct.Config.Name, h3, ct.State, ct.Reachable)
				}
				on3 = append(on3, ct.Config.Name)
			}
		}
		if !slices.Contains(on3, "pinned") {
			t.Errorf("containers reported on %s: %v, want pinned among them", h3, on3)
		}
	})

	t.Run("the leader leaves: refused while it holds a container, then hands over and is gone, its agent stopped", func(t *testing.T) {
		lv := c.leader(h1)
		var stay []string
		for _, h := range []string{h1, h2, h3} {
			if h != lv {
				stay = append(stay, h)
			}
		}
		if lv == "" || len(stay) != 2 {
			t.Fatalf("leader %q", lv)
		}
		c.must(stay[0], "run", "--name", "held", "--node", lv, "busybox", "--", "sleep", "600")
		var onLv []string
		for _, ct := range c.containers(stay[0]) {
			if ct.Node == lv {
				onLv = append(onLv, ct.Config.Name)
			}
		}
		if r := c.on(stay[0], "node", "leave", lv); r.code != 1 || !strings.Contains(r.stderr, "ferry node drain "+lv) {
			t.Fatalf("leave of %s holding %v: exit %d %s", lv, onLv, r.code, r.stderr)
		}
		if len(c.nodes(stay[0])) != 3 {
			t.Fatal("a refused leave changed the nodes")
		}
		for _, name := range onLv {
			c.must(stay[0], "rm", "--force", name)
		}
		var left api.NodeView
		if err := jsonUnmarshal(c.must(stay[0], "node", "leave", lv, "-o", "json"), &left); err != nil || left.Name != lv || left.Status != "left" {
			t.Fatalf("leave answered %+v (%v)", left, err)
		}
		for _, h := range stay {
			c.eventually(h+" lists two nodes", 20*time.Second, func() bool {
				nodes := c.nodes(h)
				return len(nodes) == 2 && statusOf(nodes, lv) == ""
			})
		}
		roles := map[string]int{}
		for _, n := range c.nodes(stay[0]) {
			roles[n.RaftRole]++
		}
		if roles["leader"] != 1 || roles["voter"] != 1 {
			t.Fatalf("raft roles after the leave: %v, want a leader and a voter", roles)
		}
		c.eventually(lv+"'s agent stopped", 20*time.Second, func() bool { return c.on(lv, "node", "info").code != 0 })
		if b, _ := os.ReadFile(filepath.Join(c.dir, lv+".log")); !strings.Contains(string(b), "left the cluster") {
			t.Errorf("%s's log does not say it left", lv)
		}
		if r := c.on(stay[0], "node", "leave", lv); r.code != 1 || !strings.Contains(r.stderr, "no node named") {
			t.Fatalf("a second leave: exit %d %s", r.code, r.stderr)
		}
		c.must(stay[1], "run", "--name", "after-leave", "busybox", "--", "sleep", "60") // the two left still take work
	})
}

// runFerry runs the command line with no agent address (for commands like agent that fail early).
func runFerry(t *testing.T, args ...string) result {
	t.Helper()
	a := &testAgent{t: t}
	return a.ferryNoAddr(args...)
}
