package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/api"
)

// killContainers kills every container in host's runc root at once (SIGKILL), as a host losing power does to
// them; with killAgent, it leaves nothing of the host running.
func (c *devCluster) killContainers(host string) {
	c.t.Helper()
	root := filepath.Join(c.dir, host, "runc")
	b, err := exec.Command("runc", "--root", root, "list", "-q").Output()
	if err != nil {
		c.t.Fatalf("runc list on %s: %v", host, err)
	}
	for _, id := range strings.Fields(string(b)) {
		if out, err := exec.Command("runc", "--root", root, "kill", id, "KILL").CombinedOutput(); err != nil {
			c.t.Logf("runc kill %s on %s: %v %s", id, host, err, out)
		}
	}
}

// runningElsewhere waits, asking host, until container name runs on a node other than dead, and returns
// where it runs and how long that took.
func (c *devCluster) runningElsewhere(host, name, dead string, timeout time.Duration) (api.ContainerView, time.Duration) {
	c.t.Helper()
	var ct api.ContainerView
	took := c.eventually(name+" running on a node other than "+dead, timeout, func() bool {
		for _, v := range c.containers(host) {
			if v.Config.Name == name && v.Node != dead && v.State == "running" {
				ct = v
				return true
			}
		}
		return false
	})
	return ct, took
}

// itemOf returns the report's item for container name.
func itemOf(t *testing.T, rep api.DrainReport, name string) api.DrainItemReport {
	t.Helper()
	for _, it := range rep.Items {
		if it.Container == name {
			return it
		}
	}
	t.Fatalf("drain %s of %s has no item for %s: %+v", rep.ID, rep.Node, name, rep.Items)
	return api.DrainItemReport{}
}

// TestFailoverDeadNode: a node holding a container with periodic snapshots dies outright (its agent and its
// containers killed): after the fencing delay, the leader restores the container on another node from its
// latest snapshot copy, which counts on from that snapshot's number and reports what was lost; when the node
// comes back, its old copy does not run and the cluster lists the container once.
func TestFailoverDeadNode(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2 := c.host(1), c.host(2)
	c.must(h1, "image", "import", "busybox", bins.image)
	c.must(h1, "run", "--name", "plain", "--node", h1, "busybox", "--", "sh", "-c", numberPrinter)
	c.must(h1, "run", "--name", "tick", "--node", h1, "--snapshot-every", "5s", "--keep", "2", "busybox", "--", "sh", "-c", numberPrinter)

	// Two periodic snapshots, the newest with a copy on another node.
	var newest api.SnapshotView
	c.eventually("a periodic snapshot of tick copied to another node", 90*time.Second, func() bool {
		list := c.snapshots(h2, "tick")
		if len(list) < 2 {
			return false
		}
		newest = list[len(list)-1]
		return len(newest.Copies) == 1 && newest.Copies[0] != h1
	})
	before := numbers(c.logLines(h1, "tick"))
	last := before[len(before)-1]
	c.killAgent(h1)
	c.killContainers(h1)
	killed := time.Now()
	t.Logf("killed %s (agent and containers) with tick at %d; newest snapshot %s (%s old)", h1, last, newest.ID, time.Since(newest.Created).Round(time.Millisecond))

	ct, took := c.runningElsewhere(h2, "tick", h1, 120*time.Second)
	t.Logf("tick runs on %s %s after the kill", ct.Node, took.Round(time.Millisecond))

	// The failover is recorded: tick restored from a snapshot at least as new as the one seen before the
	// kill, with what it lost; plain (no periodic snapshots) stays placed on the dead node, and says so.
	var rep api.DrainReport
	c.eventually("the failover of "+h1+" recorded as ended", 60*time.Second, func() bool {
		var ok bool
		rep, ok = c.drainReport(h2, h1)
		return ok && rep.Reason == "failover" && rep.State != "running" && rep.State != "planned"
	})
	it := itemOf(t, rep, "tick")
	if it.State != "restored" || it.Target != ct.Node || it.Snapshot == "" || it.Lost <= 0 || it.Lost > 30*time.Second {
		t.Fatalf("tick's failover item: %+v", it)
	}
	if it.Snapshot < newest.ID {
		t.Fatalf("tick was restored from %s, older than the newest copied snapshot %s", it.Snapshot, newest.ID)
	}
	if p := itemOf(t, rep, "plain"); p.State != "skipped" || !strings.Contains(p.Error, "no periodic snapshots") {
		t.Fatalf("plain's failover item: %+v", p)
	}
	if v := c.only(h2, "plain"); v.Node != h1 {
		t.Fatalf("plain is placed on %s, want it left on the dead %s", v.Node, h1)
	}
	// Exit status 1: a container (plain) stays on the dead node.
	st := c.on(h2, "node", "drain", "--status", h1)
	out := st.stdout
	if st.code != 1 || !strings.Contains(out, "failover of "+h1) || !strings.Contains(out, "lost ") {
		t.Fatalf("drain --status %s (exit %d) does not show the failover and the loss:\n%s%s", h1, st.code, out, st.stderr)
	}
	t.Logf("failover report:\n%s", out)
	logged := false
	for i := 2; i <= 3; i++ {
		b, _ := os.ReadFile(filepath.Join(c.dir, c.host(i)+".log"))
		logged = logged || strings.Contains(string(b), "restored on another node from its latest snapshot")
	}
	if !logged {
		t.Fatal("no agent logged the restore and its loss")
	}

	// It counts on from the snapshot's number: the restored log starts right after it, a number that the
	// dead copy had already passed (what was lost), and goes on without a gap.
	ns := c.counterFrom(h2, "tick", 10)
	contiguous(t, "tick after the failover", ns)
	if ns[0] < 1 || ns[0]-1 > last {
		t.Fatalf("tick restarted from %d; the dead copy was at %d", ns[0], last)
	}
	t.Logf("tick resumed at %d (snapshot's number %d; the dead copy had reached %d: %d numbers lost, reported lost %s)",
		ns[0], ns[0]-1, last, last-(ns[0]-1), it.Lost)

	// h1 comes back: its old copy is removed, not run, and the cluster lists tick once, where it was restored.
	c.startAgent(h1)
	c.eventually("tick gone from "+h1+"'s runc root", 60*time.Second, func() bool {
		copies := c.runcCopies("tick")
		return len(copies) == 1 && copies[ct.Node] == "running"
	})
	c.eventually("ps listing tick once, running where it was restored", 30*time.Second, func() bool {
		v := c.only(h1, "tick") // fails unless exactly one
		return v.Node == ct.Node && v.State == "running"
	})
	contiguous(t, "tick after "+h1+" came back", c.counterFrom(h1, "tick", len(ns)+5))
	c.eventually(h1+" alive and eligible again", 30*time.Second, func() bool {
		nodes := c.nodes(h1)
		return statusOf(nodes, h1) == "alive" && eligible(nodes, h1)
	})
	t.Logf("killed at %s; restored after %s", killed.Format(time.TimeOnly), took.Round(time.Millisecond))

	// Its agent alone dies this time: its container goes on running under its shim while the cluster restores
	// it elsewhere. When the agent comes back, it removes that stale copy before it serves anything.
	c.must(h1, "run", "--name", "tock", "--node", h1, "--snapshot-every", "5s", "--keep", "2", "busybox", "--", "sh", "-c", numberPrinter)
	c.eventually("a periodic snapshot of tock copied to another node", 90*time.Second, func() bool {
		list := c.snapshots(h2, "tock")
		return len(list) >= 1 && len(list[len(list)-1].Copies) == 1
	})
	c.killAgent(h1)
	ct, _ = c.runningElsewhere(h2, "tock", h1, 120*time.Second)
	if copies := c.runcCopies("tock"); copies[h1] != "running" {
		t.Fatalf("tock's old copy on %s should still run under its shim while the agent is down: %v", h1, copies)
	}
	logBefore, _ := os.ReadFile(filepath.Join(c.dir, h1+".log"))
	c.startAgent(h1)
	if copies := c.runcCopies("tock"); len(copies) != 1 || copies[ct.Node] != "running" {
		t.Fatalf("after %s's agent came back, tock is in the runc roots %v, want only on %s", h1, copies, ct.Node)
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, h1+".log"))
	restart := string(b[len(logBefore):])
	fenced := strings.Index(restart, "removing a container that the cluster places on another node")
	ready := strings.Index(restart, "agent ready")
	if fenced < 0 || ready < 0 || fenced > ready {
		t.Fatalf("%s's agent did not remove tock's stale copy before it was ready (at %d, ready at %d):\n%s", h1, fenced, ready, restart)
	}
	if v := c.only(h1, "tock"); v.Node != ct.Node {
		t.Fatalf("tock is on %s, want %s", v.Node, ct.Node)
	}

	// Its agent dies in the middle of a migration off it, the container frozen and dumped, before the target
	// restored it: the migration is rolled back without the dead source, so that the failover restores the
	// container elsewhere (it waits for the migration to be over); when the agent comes back, it removes its
	// frozen copy, which the cluster places elsewhere.
	h3 := c.host(3)
	c.restartAgent(h1, "--fault", "stall-migration-dump")
	c.must(h1, "run", "--name", "mig", "--node", h1, "--snapshot-every", "5s", "--keep", "2", "busybox", "--", "sh", "-c", numberPrinter)
	c.eventually("a periodic snapshot of mig copied to another node", 90*time.Second, func() bool {
		list := c.snapshots(h2, "mig")
		return len(list) >= 1 && len(list[len(list)-1].Copies) == 1
	})
	mb, _ := c.background(h2, "migrate", "mig", h3)
	c.eventually("mig frozen on "+h1+" for its migration", 60*time.Second, func() bool { return c.runcCopies("mig")[h1] == "paused" })
	c.killAgent(h1)
	ct, _ = c.runningElsewhere(h2, "mig", h1, 150*time.Second)
	if copies := c.runcCopies("mig"); copies[h1] != "paused" {
		t.Fatalf("mig's copy on %s should stay frozen while its agent is down: %v", h1, copies)
	}
	mout, merr := mb.wait(time.Minute)
	t.Logf("ferry migrate mig %s, its source's agent killed (%v): %s%s", h3, merr, mout, mb.errb.String())
	contiguous(t, "mig after the failover", c.counterFrom(h2, "mig", 5))
	logBefore, _ = os.ReadFile(filepath.Join(c.dir, h1+".log"))
	c.startAgent(h1)
	c.eventually("mig's frozen copy removed from "+h1, 60*time.Second, func() bool {
		copies := c.runcCopies("mig")
		return len(copies) == 1 && copies[ct.Node] == "running"
	})
	b2, _ := os.ReadFile(filepath.Join(c.dir, h1+".log"))
	if !strings.Contains(string(b2[len(logBefore):]), "removed a container frozen by a migration that is over") {
		t.Fatalf("%s's agent did not say it removed mig's frozen copy", h1)
	}
	if v := c.only(h1, "mig"); v.Node != ct.Node || v.State != "running" {
		t.Fatalf("mig is %s on %s, want running on %s", v.State, v.Node, ct.Node)
	}
}

// TestDrainForce: a container that cannot move (the other nodes are drained) is, with --force, snapshotted
// and stopped when the deadline passes; the report gives the snapshot, and ferry snapshot load brings it back
// counting on from where it stopped.
func TestDrainForce(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2, h3 := c.host(1), c.host(2), c.host(3)
	c.must(h1, "image", "import", "busybox", bins.image)
	c.must(h1, "run", "--name", "stuck", "--node", h1, "busybox", "--", "sh", "-c", numberPrinter)
	c.counterFrom(h1, "stuck", 10)
	c.must(h1, "node", "drain", h2)
	c.must(h1, "node", "drain", h3)

	r := c.on(h1, "node", "drain", h1, "--force")
	if r.code != 2 || !strings.Contains(r.stderr, "--force needs --deadline") {
		t.Fatalf("--force without --deadline: exit %d, %s", r.code, r.stderr)
	}
	start := time.Now()
	var rep api.DrainReport
	if err := json.Unmarshal([]byte(c.must(h1, "node", "drain", h1, "--deadline", "4s", "--force", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	it := itemOf(t, rep, "stuck")
	if rep.State != "committed" || rep.Stopped != 1 || it.State != "snapshotted" || it.Snapshot == "" ||
		!strings.Contains(it.Error, "ferry snapshot load stuck "+it.Snapshot) {
		t.Fatalf("forced drain report: %+v", rep)
	}
	if took := time.Since(start); took < 4*time.Second {
		t.Fatalf("the drain forced stuck after %s, before its 4s deadline", took)
	}
	t.Logf("forced drain: %s", it.Error)
	if v := c.only(h1, "stuck"); v.State == "running" || v.Desired != "stopped" {
		t.Fatalf("after the forced drain stuck is %s (desired %s)", v.State, v.Desired)
	}
	if copies := c.runcCopies("stuck"); copies[h1] == "running" {
		t.Fatalf("stuck still runs on %s: %v", h1, copies)
	}
	stopped := numbers(c.logLines(h1, "stuck"))
	last := stopped[len(stopped)-1]
	list := c.snapshots(h1, "stuck")
	if len(list) != 1 || list[0].ID != it.Snapshot || len(list[0].Copies) != 1 {
		t.Fatalf("snapshots of stuck: %+v", list)
	}
	// Recorded, the snapshot no longer has the record its node kept until then.
	if kept, _ := filepath.Glob(filepath.Join(c.dir, h1, "snapshots", "*.record")); len(kept) > 0 {
		t.Fatalf("the node still keeps the record of a recorded snapshot: %v", kept)
	}

	c.must(h1, "snapshot", "load", "stuck", it.Snapshot)
	ns := c.counterFrom(h1, "stuck", len(stopped)+10)
	contiguous(t, "stuck after the load", ns)
	if !slices.Contains(ns, last+1) {
		t.Fatalf("stuck stopped at %d but did not count on from there: %v", last, ns)
	}
	if v := c.only(h1, "stuck"); v.State != "running" || v.Node != h1 {
		t.Fatalf("after the load stuck is %s on %s", v.State, v.Node)
	}
}

// TestFailoverCutOffNode: a node holding a container with periodic snapshots is cut off but keeps running:
// its agent freezes its copy within half the fencing delay (5 s with --fast-failover), before the cluster
// restores the container elsewhere; when the link is back, the old copy is removed and the cluster lists the
// container once, running on the other node.
func TestFailoverCutOffNode(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2 := c.host(1), c.host(2)
	c.must(h1, "image", "import", "busybox", bins.image)
	c.must(h1, "run", "--name", "tick", "--node", h1, "--snapshot-every", "5s", "--keep", "2", "busybox", "--", "sh", "-c", numberPrinter)
	c.eventually("a periodic snapshot of tick copied to another node", 90*time.Second, func() bool {
		list := c.snapshots(h2, "tick")
		return len(list) > 0 && len(list[len(list)-1].Copies) == 1 && list[len(list)-1].Copies[0] != h1
	})
	root := filepath.Join(c.dir, h1, "runc")
	status := func() string {
		out, err := exec.Command("runc", "--root", root, "state", "tick").Output()
		if err != nil {
			return "gone"
		}
		var st struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(out, &st)
		return st.Status
	}
	// A short cut (the link back before the fencing delay ends): the copy is frozen, then thawed where it is.
	c.link(h1, false)
	c.eventually("tick frozen on "+h1+" during a short cut", 30*time.Second, func() bool { return status() == "paused" })
	c.link(h1, true)
	c.eventually("tick thawed on "+h1+" once the link is back", 60*time.Second, func() bool { return status() == "running" })
	if v := c.only(h2, "tick"); v.Node != h1 {
		t.Fatalf("after a short cut, tick is placed on %s, want %s", v.Node, h1)
	}
	c.eventually("tick counting on after the short cut", 30*time.Second, func() bool {
		n := numbers(c.logLines(h1, "tick"))
		return len(n) > 0 && n[len(n)-1] > 0
	})
	checkSequence(t, c.logLines(h1, "tick"))

	c.link(h1, false)
	linkUp := false
	defer func() {
		if !linkUp {
			c.link(h1, true)
		}
	}()
	frozen := c.eventually("tick frozen on the cut-off "+h1, 30*time.Second, func() bool { return status() == "paused" })
	t.Logf("tick frozen on %s %s after the cut", h1, frozen.Round(time.Millisecond))
	restored, took := c.runningElsewhere(h2, "tick", h1, 120*time.Second)
	elsewhere := restored.Node
	if frozen >= took {
		t.Fatalf("the cut-off copy was frozen %s after the cut, not before the restore elsewhere (%s)", frozen, took)
	}
	if st := status(); st != "paused" {
		t.Fatalf("while tick runs on %s, the cut-off copy on %s is %s", elsewhere, h1, st)
	}
	c.link(h1, true)
	linkUp = true
	c.eventually(h1+" alive again", 60*time.Second, func() bool { return statusOf(c.nodes(h2), h1) == "alive" })
	c.eventually("the cut-off copy removed from "+h1, 60*time.Second, func() bool {
		n := 0
		for _, v := range c.containers(h1) {
			if v.Config.Name == "tick" {
				n++
			}
		}
		return status() == "gone" && n == 1
	})
	if v := c.only(h1, "tick"); v.Node != elsewhere || v.State != "running" {
		t.Fatalf("after the link came back, tick is %s on %s, want running on %s", v.State, v.Node, elsewhere)
	}
	b, _ := os.ReadFile(filepath.Join(c.dir, h1+".log"))
	if !strings.Contains(string(b), "cut off from the cluster: froze") {
		t.Fatalf("%s's log does not say it froze tick", h1)
	}
}
