package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/api"
)

// drainWorkload is the six containers of the drain tests: five number printers and a 64 MiB memory load.
var drainWorkload = []string{"np1", "np2", "np3", "np4", "np5", "mem"}

// placement returns where the cluster places each container, as ps shows it through host.
func (c *devCluster) placement(host string) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, ct := range c.containers(host) {
		out[ct.Config.Name] = ct.Node
	}
	return out
}

// runcCopies returns the hosts whose runc root holds a container named name, and in what state.
func (c *devCluster) runcCopies(name string) map[string]string {
	out := map[string]string{}
	for i := 1; i <= 3; i++ {
		h := c.host(i)
		b, err := exec.Command("runc", "--root", filepath.Join(c.dir, h, "runc"), "list", "-f", "json").Output()
		if err != nil {
			continue
		}
		var list []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		_ = json.Unmarshal(b, &list)
		for _, ct := range list {
			if ct.ID == name {
				out[h] = ct.Status
			}
		}
	}
	return out
}

// drainChecker holds what the workload must keep across moves: the memory load's checksum.
type drainChecker struct {
	c      *devCluster
	memSum string
}

// intact fails unless each of the six runs exactly once (in ps and in the runc roots of the hosts), where the
// cluster places it, every printer's numbers are unbroken and go on, and the memory load's checksum is the one
// it started with. It returns the placement.
func (d *drainChecker) intact(t *testing.T, via string) map[string]string {
	t.Helper()
	c := d.c
	where := c.placement(via)
	for _, name := range drainWorkload {
		ct := c.only(via, name)
		if ct.State != "running" {
			t.Fatalf("%s is %s on %s, want running", name, ct.State, ct.Node)
		}
		var copies map[string]string
		c.eventually(name+" in exactly one runc root", 60*time.Second, func() bool {
			copies = c.runcCopies(name)
			return len(copies) == 1 && copies[ct.Node] == "running"
		})
	}
	for _, name := range drainWorkload {
		if name == "mem" {
			_, tick := memTicks(t, c.logLines(via, name))
			lines := c.waitUntil(via, name, func(l []string) bool { _, t2 := memTicks(t, l); return t2 >= tick+5 })
			if sums, _ := memTicks(t, lines); len(sums) != 1 || !sums[d.memSum] {
				t.Fatalf("mem's memory changed: sums %v, it started with %s", sums, d.memSum)
			}
			continue
		}
		n := len(c.logLines(via, name))
		checkSequence(t, c.waitUntil(via, name, func(l []string) bool { return len(l) >= n+5 }))
	}
	return where
}

func (c *devCluster) drainReport(host, nodeName string) (api.DrainReport, bool) {
	var rep api.DrainReport
	r := c.on(host, "node", "drain", "--status", nodeName, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		return rep, false
	}
	return rep, true
}

func eligible(nodes []api.NodeView, name string) bool {
	for _, n := range nodes {
		if n.Name == name {
			return n.Eligible && !n.Maintenance
		}
	}
	return false
}

func countOn(where map[string]string, host string) int {
	n := 0
	for _, h := range where {
		if h == host {
			n++
		}
	}
	return n
}

func TestDrain(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2, h3 := c.host(1), c.host(2), c.host(3)
	hosts := []string{h1, h2, h3}
	c.must(h1, "image", "import", "busybox", bins.image)
	for _, name := range drainWorkload[:5] {
		c.must(h1, "run", "--name", name, "--node", h1, "busybox", "--", "sh", "-c", numberPrinter)
	}
	c.must(h1, "run", "--name", "mem", "--node", h1, "--memory", "256m", "busybox", "--", "/bin/memload", "-mib", "64", "-interval", "100ms", "-sum-every", "5")
	before := c.waitUntil(h1, "mem", func(l []string) bool { _, tick := memTicks(t, l); return tick >= 5 })
	sums, _ := memTicks(t, before)
	if len(sums) != 1 {
		t.Fatalf("mem's sums before any move: %v", sums)
	}
	d := &drainChecker{c: c}
	for s := range sums {
		d.memSum = s
	}
	for _, name := range drainWorkload[:5] {
		c.waitUntil(h1, name, func(l []string) bool { return len(l) >= 10 })
	}

	t.Run("drain moves all six live, spread over the others, and keeps new work away until undrain", func(t *testing.T) {
		r := c.on(h2, "node", "drain", h1, "--max-parallel", "2", "-o", "json")
		if r.code != 0 {
			t.Fatalf("drain: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "-> ") || !strings.Contains(r.stderr, "dumping") {
			t.Fatalf("drain showed no progress:\n%s", r.stderr)
		}
		var rep api.DrainReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.State != "committed" || rep.Moved != 6 || len(rep.Items) != 6 {
			t.Fatalf("drain report: %+v", rep)
		}
		for _, it := range rep.Items {
			if it.State != "committed" || (it.Target != h2 && it.Target != h3) || it.Downtime <= 0 {
				t.Fatalf("drain item: %+v", it)
			}
			t.Logf("%s -> %s, downtime %s", it.Container, it.Target, it.Downtime.Round(time.Millisecond))
		}
		t.Logf("drained %s in %s", h1, rep.Took.Round(time.Millisecond))
		where := d.intact(t, h3)
		if n := countOn(where, h1); n != 0 {
			t.Fatalf("%s still holds %d containers: %v", h1, n, where)
		}
		if n2, n3 := countOn(where, h2), countOn(where, h3); n2 < 2 || n3 < 2 {
			t.Fatalf("not spread: %d on %s, %d on %s", n2, h2, n3, h3)
		}
		if eligible(c.nodes(h1), h1) {
			t.Fatalf("%s is still eligible after its drain", h1)
		}
		if st, ok := c.drainReport(h3, h1); !ok || st.State != "committed" || st.ID != rep.ID {
			t.Fatalf("drain --status: %+v", st)
		}
		for i := range 3 {
			name := fmt.Sprintf("probe%d", i)
			var ct api.ContainerView
			if err := jsonUnmarshal(c.must(h1, "run", "--name", name, "-o", "json", "busybox", "--", "sleep", "600"), &ct); err != nil {
				t.Fatal(err)
			}
			if ct.Node == h1 {
				t.Fatalf("ferry run placed %s on the drained %s", name, h1)
			}
			c.must(h1, "rm", "--force", name)
		}
		if r := c.on(h1, "run", "--name", "pinned", "--node", h1, "busybox", "--", "sleep", "600"); r.code != 1 || !strings.Contains(r.stderr, "draining") {
			t.Fatalf("ferry run --node %s on the drained node: exit %d %s", h1, r.code, r.stderr)
		}
		var ch api.NodeChange
		if err := jsonUnmarshal(c.must(h2, "node", "undrain", h1, "-o", "json"), &ch); err != nil {
			t.Fatal(err)
		}
		// The agent asked answers with what it wrote and lists it at once (read your writes).
		if !ch.Node.Eligible || !eligible(c.nodes(h2), h1) {
			t.Fatalf("%s is not eligible after undrain: %+v", h1, ch.Node)
		}
		c.must(h1, "run", "--name", "pinned", "--node", h1, "busybox", "--", "sleep", "600")
		c.must(h1, "rm", "--force", "pinned")
	})

	t.Run("the leader's agent is killed in the middle of a drain: the new leader finishes it", func(t *testing.T) {
		var leader string
		c.eventually("all agree on a leader", 20*time.Second, func() bool {
			leader = c.leader(h1)
			return leader != "" && c.leader(h2) == leader && c.leader(h3) == leader
		})
		where := c.placement(h1)
		var drained string
		for _, h := range hosts {
			if h != leader && (drained == "" || countOn(where, h) > countOn(where, drained)) {
				drained = h
			}
		}
		if countOn(where, drained) < 2 {
			for _, name := range drainWorkload[:3] {
				if where[name] != drained {
					c.must(drained, "migrate", name, drained)
				}
			}
		}
		b, lines := c.background(drained, "node", "drain", drained, "--max-parallel", "1")
		waitLine(t, lines, "dumping", 60*time.Second)
		c.killAgent(leader)
		_, _ = b.wait(30 * time.Second) // its stream went through the leader: it ends with an error
		var newLeader string
		c.eventually("a new leader", 60*time.Second, func() bool {
			newLeader = c.leader(drained)
			return newLeader != "" && newLeader != leader
		})
		// The killed agent comes back, as its service manager would restart it. (A migration whose target was
		// the killed node can only be finished or rolled back once that node answers whether it runs the
		// container: until then the drain waits for it rather than risk two copies.)
		if out, err := c.script("up"); err != nil {
			t.Fatalf("restarting %s: %v\n%s", leader, err, out)
		}
		var rep api.DrainReport
		c.eventually("the drain of "+drained+" finished by the new leader", 3*time.Minute, func() bool {
			var ok bool
			rep, ok = c.drainReport(drained, drained)
			return ok && (rep.State == "committed" || rep.State == "failed")
		})
		if rep.State != "committed" {
			t.Fatalf("after the leader %s was killed, the drain of %s ended %s: %s\n%+v", leader, drained, rep.State, rep.Error, rep.Items)
		}
		t.Logf("leader %s killed during the drain of %s: the new leader %s finished it (%d moved)", leader, drained, newLeader, rep.Moved)
		for _, it := range rep.Items {
			t.Logf("%s -> %s after %d attempts (tried %v), downtime %s", it.Container, it.Target, it.Attempts, it.Tried, it.Downtime.Round(time.Millisecond))
		}
		c.eventually(leader+" alive again", 60*time.Second, func() bool { return statusOf(c.nodes(drained), leader) == "alive" })
		if where := d.intact(t, drained); countOn(where, drained) != 0 {
			t.Fatalf("%s still holds containers: %v", drained, where)
		}
		c.must(drained, "node", "undrain", drained)
	})

	t.Run("a target cut off in the middle of a drain: nothing lost or doubled", func(t *testing.T) {
		var leader string
		c.eventually("all agree on a leader", 30*time.Second, func() bool {
			leader = c.leader(h1)
			return leader != "" && c.leader(h2) == leader && c.leader(h3) == leader
		})
		where := c.placement(leader)
		drained := h1
		for _, h := range hosts {
			if countOn(where, h) > countOn(where, drained) {
				drained = h
			}
		}
		var cut, other string
		for _, h := range hosts {
			switch {
			case h == drained:
			case cut == "" && h != leader:
				cut = h
			default:
				other = h
			}
		}
		if countOn(where, drained) < 3 {
			for _, name := range drainWorkload {
				if where[name] != drained && countOn(where, drained) < 3 {
					c.must(drained, "migrate", name, drained)
					where[name] = drained
				}
			}
		}
		b, lines := c.background(other, "node", "drain", drained, "--max-parallel", "2")
		waitLine(t, lines, "-> "+cut+": dumping", 90*time.Second)
		c.link(cut, false)
		linkUp := false
		defer func() {
			if !linkUp {
				c.link(cut, true)
			}
		}()
		out, err := b.wait(4 * time.Minute)
		c.link(cut, true)
		linkUp = true
		t.Logf("drain with %s cut off (%v):\n%s%s", cut, err, out, b.errb.String())
		rep, ok := c.drainReport(other, drained)
		if !ok || (rep.State != "committed" && rep.State != "failed") {
			t.Fatalf("the drain did not end: %+v", rep)
		}
		c.eventually(cut+" alive again", 90*time.Second, func() bool { return statusOf(c.nodes(other), cut) == "alive" })
		after := d.intact(t, other)
		for _, it := range rep.Items {
			t.Logf("%s: %s to %q after %d attempts (tried %v) %s", it.Container, it.State, it.Target, it.Attempts, it.Tried, it.Error)
			if slices.Contains(it.Tried, cut) && after[it.Container] != drained && after[it.Container] != other {
				t.Fatalf("%s was bound for the cut-off %s and is now on %s", it.Container, cut, after[it.Container])
			}
			if it.State == "committed" && after[it.Container] != it.Target {
				t.Fatalf("%s moved to %s says the drain, but runs on %s", it.Container, it.Target, after[it.Container])
			}
			if it.State != "committed" && after[it.Container] != drained {
				t.Fatalf("%s stays says the drain, but runs on %s", it.Container, after[it.Container])
			}
		}
		if !slices.ContainsFunc(rep.Items, func(it api.DrainItemReport) bool { return slices.Contains(it.Tried, cut) }) {
			t.Fatalf("no migration to the cut-off %s failed; the cut came too late: %+v", cut, rep.Items)
		}
		t.Logf("drain of %s with %s cut off: %s, %d moved, %d stay", drained, cut, rep.State, rep.Moved, rep.Stayed)
		c.must(other, "node", "undrain", drained)
	})

	t.Run("an agent started with --evacuate-on-shutdown moves its containers away on SIGTERM", func(t *testing.T) {
		c.restartAgent(h2, "--evacuate-on-shutdown", "--shutdown-timeout", "2m")
		where := c.placement(h1)
		for _, name := range drainWorkload[:3] {
			if where[name] != h2 {
				c.must(h1, "migrate", name, h2)
			}
		}
		where = c.placement(h1)
		var onH2 []string
		for _, name := range drainWorkload {
			if where[name] == h2 {
				onH2 = append(onH2, name)
			}
		}
		b, err := os.ReadFile(filepath.Join(c.dir, h2+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		fmt.Sscan(string(b), &pid)
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		c.eventually(h2+"'s agent exits", 3*time.Minute, func() bool { return !alive(pid) })
		t.Logf("%s's agent evacuated %v and exited in %s", h2, onH2, time.Since(start).Round(time.Millisecond))
		log, _ := os.ReadFile(filepath.Join(c.dir, h2+".log"))
		if !strings.Contains(string(log), "evacuated: every container moved away") {
			t.Fatalf("%s's log does not say it evacuated:\n%s", h2, lastBytes(log, 3000))
		}
		after := d.intact(t, h1)
		if n := countOn(after, h2); n != 0 {
			t.Fatalf("%d containers are still on %s after its evacuation: %v", n, h2, after)
		}
		if rep, ok := c.drainReport(h1, h2); !ok || rep.State != "committed" || rep.Reason != "shutdown" || rep.Moved != len(onH2) {
			t.Fatalf("the evacuation's drain: %+v", rep)
		}
	})

	t.Run("maintenance drains in the background; a --no-migrate container stays and is reported", func(t *testing.T) {
		where := c.placement(h1)
		node := h1
		if countOn(where, h3) < countOn(where, h1) {
			node = h3
		}
		c.must(node, "run", "--name", "pinned", "--node", node, "--no-migrate", "busybox", "--", "sleep", "600")
		if r := c.on(node, "migrate", "pinned", h2); r.code == 0 || !strings.Contains(r.stderr, "--no-migrate") {
			t.Fatalf("migrate of a --no-migrate container: exit %d %s", r.code, r.stderr)
		}
		if r := c.on(node, "node", "drain", node, "--force"); r.code != 2 || !strings.Contains(r.stderr, "--force needs --deadline") {
			t.Fatalf("drain --force: exit %d %s", r.code, r.stderr)
		}
		out := c.must(node, "node", "maintenance", "on") // the node of the agent asked
		if !strings.Contains(out, node+" is in maintenance") {
			t.Fatalf("maintenance on: %s", out)
		}
		if r := c.on(node, "node", "undrain", node); r.code == 0 || !strings.Contains(r.stderr, "maintenance off") {
			t.Fatalf("undrain of a node in maintenance: exit %d %s", r.code, r.stderr)
		}
		var rep api.DrainReport
		c.eventually("the maintenance drain of "+node+" ends", 3*time.Minute, func() bool {
			var ok bool
			rep, ok = c.drainReport(node, node)
			return ok && (rep.State == "committed" || rep.State == "failed")
		})
		if rep.Reason != "maintenance" || rep.State != "failed" || !strings.Contains(rep.Error, "pinned") {
			t.Fatalf("maintenance drain: %+v", rep)
		}
		for _, it := range rep.Items {
			switch {
			case it.Container == "pinned" && (it.State != "skipped" || !strings.Contains(it.Error, "--no-migrate")):
				t.Fatalf("the --no-migrate container: %+v", it)
			case it.Container != "pinned" && it.State != "committed":
				t.Fatalf("%s did not move: %+v", it.Container, it)
			}
		}
		if ct := c.only(node, "pinned"); ct.Node != node || ct.State != "running" {
			t.Fatalf("pinned is %s on %s, want running on %s", ct.State, ct.Node, node)
		}
		if r := c.on(node, "node", "drain", "--status", node); r.code != 1 || !strings.Contains(r.stdout, "not moved") {
			t.Fatalf("drain --status of a drain that left a container: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		c.must(node, "node", "maintenance", "off", node)
		if !eligible(c.nodes(node), node) {
			t.Fatalf("%s is not eligible after maintenance off", node)
		}
		d.intact(t, node)
	})

}
