package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var stampRE = regexp.MustCompile(`\bt=(\d+)$`)

// biggestGap is the longest pause in memload's timestamped output: the downtime as the workload saw it.
func biggestGap(lines []string) time.Duration {
	var last, gap int64
	for _, l := range lines {
		m := stampRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		t, _ := strconv.ParseInt(m[1], 10, 64)
		if last > 0 && t-last > gap {
			gap = t - last
		}
		last = t
	}
	return time.Duration(gap) * time.Microsecond
}

func TestMigration(t *testing.T) {
	c := startDevCluster(t, 3)
	h1, h2, h3 := c.host(1), c.host(2), c.host(3)
	// The image is only on h1: a migration to another node must bring it along.
	c.must(h1, "image", "import", "busybox", bins.image)

	t.Run("the number printer moves there and back and its log has every number once", func(t *testing.T) {
		c.must(h1, "run", "--name", "np", "--node", h1, "busybox", "--", "sh", "-c", numberPrinter)
		c.eventually("np printing", 20*time.Second, func() bool { return len(c.logLines(h1, "np")) >= 10 })
		follow, _ := c.background(h3, "logs", "-f", "np")
		out := c.must(h3, "migrate", "np", h1, h2)
		if !strings.Contains(out, "downtime") {
			t.Fatalf("migrate printed no report:\n%s", out)
		}
		if ct := c.only(h3, "np"); ct.Node != h2 || ct.State != "running" {
			t.Fatalf("after the migration np is %s on %s, want running on %s", ct.State, ct.Node, h2)
		}
		n := len(c.logLines(h3, "np"))
		c.eventually("np printing on "+h2, 20*time.Second, func() bool { return len(c.logLines(h3, "np")) >= n+10 })
		c.must(h2, "migrate", "np", h1) // and back, asked through the target
		if ct := c.only(h1, "np"); ct.Node != h1 || ct.State != "running" {
			t.Fatalf("after the way back np is %s on %s", ct.State, ct.Node)
		}
		n = len(c.logLines(h1, "np"))
		lines := c.waitUntil(h1, "np", func(l []string) bool { return len(l) >= n+10 })
		checkSequence(t, lines)
		c.must(h1, "stop", "np")
		followed, err := follow.wait(20 * time.Second)
		if err != nil {
			t.Fatalf("logs -f across two migrations: %v", err)
		}
		fl := strings.Split(strings.TrimSpace(followed), "\n")
		checkSequence(t, fl)
		if len(fl) < len(lines) {
			t.Fatalf("logs -f printed %d lines, the log has %d", len(fl), len(lines))
		}
		t.Logf("number printer: %d lines, unbroken across %s -> %s -> %s, followed by logs -f through %s", len(fl), h1, h2, h1, h3)
		c.must(h1, "rm", "np")
	})

	t.Run("256 MiB of memory, files, the environment and the limits go with it", func(t *testing.T) {
		c.must(h1, "run", "--name", "mem", "--node", h1, "--memory", "512m", "--env", "GREETING=hello from "+h1, "busybox", "--",
			"sh", "-c", `echo "$GREETING" > /data/greeting; echo "$GREETING" > /dev/shm/greeting; exec /bin/memload -mib 256 -interval 100ms -sum-every 10`)
		before := c.waitUntil(h1, "mem", func(l []string) bool { _, tick := memTicks(t, l); return tick >= 10 })
		sums, tick := memTicks(t, before)
		var rep struct {
			Downtime int64 `json:"downtime"`
			Total    int64 `json:"total"`
			BytesRaw int64 `json:"bytes_raw"`
		}
		if err := jsonUnmarshal(c.must(h1, "migrate", "mem", h2, "-o", "json"), &rep); err != nil {
			t.Fatal(err)
		}
		after := c.waitUntil(h2, "mem", func(l []string) bool { _, t2 := memTicks(t, l); return t2 >= tick+20 })
		sumsAfter, _ := memTicks(t, after)
		if len(sums) != 1 || len(sumsAfter) != 1 {
			t.Fatalf("memory sums before %v, after %v: the memory changed", sums, sumsAfter)
		}
		t.Logf("256 MiB workload: downtime %s (reported), %s (gap in its own output), total %s, %d MiB moved",
			time.Duration(rep.Downtime), biggestGap(after), time.Duration(rep.Total), rep.BytesRaw>>20)
		for _, f := range []string{"/data/greeting", "/dev/shm/greeting"} { // the writable layer, the container's own tmpfs
			if got := strings.TrimSpace(c.must(h2, "exec", "mem", "--", "cat", f)); got != "hello from "+h1 {
				t.Fatalf("%s written on %s reads %q on %s", f, h1, got, h2)
			}
		}
		if got := strings.TrimSpace(c.must(h2, "exec", "mem", "--", "sh", "-c", "echo $GREETING")); got != "hello from "+h1 {
			t.Fatalf("environment on %s: %q", h2, got)
		}
		limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory/ferry", h2, "mem", "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(limit)) != strconv.Itoa(512<<20) {
			t.Fatalf("memory limit on %s: %q (%v)", h2, limit, err)
		}
		c.must(h2, "rm", "--force", "mem")
	})

	// Each fault must leave the container running on its source with its memory intact, and say why.
	c.must(h1, "run", "--name", "victim", "--node", h1, "busybox", "--", "/bin/memload", "-mib", "64", "-interval", "100ms", "-sum-every", "5")
	victimSum := func() map[string]bool {
		sums, _ := memTicks(t, c.logLines(h1, "victim"))
		return sums
	}
	c.waitUntil(h1, "victim", func(l []string) bool { _, tick := memTicks(t, l); return tick >= 5 })
	sum0 := victimSum()
	stillOnSource := func(t *testing.T, r result, why string) {
		t.Helper()
		if r.code != 1 || !strings.Contains(r.stderr+r.stdout, why) {
			t.Fatalf("migrate: exit %d, want 1 with %q\nstdout: %s\nstderr: %s", r.code, why, r.stdout, r.stderr)
		}
		if ct := c.only(h1, "victim"); ct.Node != h1 || ct.State != "running" {
			t.Fatalf("after a failed migration victim is %s on %s, want running on %s", ct.State, ct.Node, h1)
		}
		_, tick := memTicks(t, c.logLines(h1, "victim"))
		c.waitUntil(h1, "victim", func(l []string) bool { _, t2 := memTicks(t, l); return t2 >= tick+6 })
		if got := victimSum(); len(got) != 1 || fmt.Sprint(got) != fmt.Sprint(sum0) {
			t.Fatalf("victim's memory changed: %v, was %v", got, sum0)
		}
		for _, h := range []string{h2, h3} {
			if ls, _ := exec.Command("runc", "--root", filepath.Join(c.dir, h, "runc"), "list", "-q").Output(); strings.Contains(string(ls), "victim") {
				t.Fatalf("%s was left with a copy of victim", h)
			}
		}
	}

	t.Run("post-copy is refused by a live probe before anything is touched", func(t *testing.T) {
		r := c.on(h1, "migrate", "victim", h2, "--mode", "post-copy")
		if r.code == 0 || !strings.Contains(r.stderr, "post-copy") || !strings.Contains(r.stderr, "probe") {
			t.Fatalf("migrate --mode post-copy: exit %d, want a refusal naming the probe\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		t.Logf("post-copy refused: %s", strings.TrimSpace(r.stderr))
		if ct := c.only(h1, "victim"); ct.Node != h1 || ct.State != "running" {
			t.Fatalf("after a refused post-copy victim is %s on %s", ct.State, ct.Node)
		}
	})
	t.Run("corrupted pages in transit are refused", func(t *testing.T) {
		c.restartAgent(h1, "--fault", "corrupt-pages")
		defer c.restartAgent(h1)
		stillOnSource(t, c.on(h1, "migrate", "victim", h2), "pages arrived damaged")
	})
	t.Run("a restore that fails on the target", func(t *testing.T) {
		c.restartAgent(h2, "--fault", "break-restore")
		defer c.restartAgent(h2)
		stillOnSource(t, c.on(h1, "migrate", "victim", h2), "restoring on "+h2)
	})
	t.Run("the target's data dir is full", func(t *testing.T) {
		dir := filepath.Join(c.dir, h2, "checkpoints")
		os.MkdirAll(dir, 0o700)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount: %v %s", err, out)
		}
		defer exec.Command("umount", "-l", dir).Run()
		stillOnSource(t, c.on(h1, "migrate", "victim", h2), "rolled-back")
	})
	t.Run("the target's agent is killed during the transfer", func(t *testing.T) {
		b, lines := c.background(h1, "migrate", "victim", h2)
		waitLine(t, lines, "dumping", 30*time.Second)
		c.killAgent(h2)
		if _, err := b.wait(2 * time.Minute); err == nil {
			t.Fatal("the migration succeeded though its target died")
		}
		stillOnSource(t, result{code: 1, stderr: b.errb.String() + b.out.String()}, "victim")
		if out, err := c.script("up"); err != nil {
			t.Fatalf("restarting %s: %v\n%s", h2, err, out)
		}
		c.eventually(h2+" alive again", 30*time.Second, func() bool { return statusOf(c.nodes(h1), h2) == "alive" })
	})
	t.Run("the link to the target is cut during the transfer", func(t *testing.T) {
		b, lines := c.background(h1, "migrate", "victim", h2)
		waitLine(t, lines, "dumping", 30*time.Second)
		c.link(h2, false)
		linkUp := false
		defer func() {
			if !linkUp {
				c.link(h2, true)
			}
		}()
		if _, err := b.wait(3 * time.Minute); err == nil {
			t.Fatal("the migration succeeded though its target was cut off")
		}
		c.link(h2, true)
		linkUp = true
		stillOnSource(t, result{code: 1, stderr: b.errb.String() + b.out.String()}, "victim")
		c.eventually(h2+" alive again", 60*time.Second, func() bool { return statusOf(c.nodes(h1), h2) == "alive" })
	})
	c.must(h1, "rm", "--force", "victim")

	t.Run("the leader's agent is killed in the middle of a migration", func(t *testing.T) {
		var leader string
		c.eventually("all agree on a leader", 20*time.Second, func() bool {
			leader = c.leader(h1)
			return leader != "" && c.leader(h2) == leader && c.leader(h3) == leader
		})
		var others []string
		for _, h := range []string{h1, h2, h3} {
			if h != leader {
				others = append(others, h)
			}
		}
		src, dst := others[0], others[1]
		c.must(src, "run", "--name", "orphan", "--node", src, "busybox", "--", "/bin/memload", "-mib", "256", "-interval", "100ms", "-sum-every", "10")
		before := c.waitUntil(src, "orphan", func(l []string) bool { _, tick := memTicks(t, l); return tick >= 10 })
		sums, _ := memTicks(t, before)
		_, lines := c.background(dst, "migrate", "orphan", dst)
		waitLine(t, lines, "dumping", 60*time.Second)
		c.killAgent(leader)
		// The new leader finishes or rolls back the job: the container runs in exactly one place.
		var where string
		c.eventually("orphan running in exactly one place", 90*time.Second, func() bool {
			r := c.on(src, "ps", "-o", "json")
			if r.code != 0 {
				return false
			}
			var list []struct {
				Node  string `json:"node"`
				State string `json:"state"`
				Cfg   struct {
					Name string `json:"name"`
				} `json:"config"`
			}
			if jsonUnmarshal(r.stdout, &list) != nil {
				return false
			}
			n := 0
			for _, ct := range list {
				if ct.Cfg.Name == "orphan" && ct.State == "running" {
					n++
					where = ct.Node
				}
			}
			return n == 1
		})
		other := src
		if where == src {
			other = dst
		}
		if ls, _ := exec.Command("runc", "--root", filepath.Join(c.dir, other, "runc"), "list", "-q").Output(); strings.Contains(string(ls), "orphan") {
			t.Fatalf("orphan runs on %s and is left on %s too", where, other)
		}
		after := c.waitUntil(where, "orphan", func(l []string) bool { _, tick := memTicks(t, l); return tick >= 30 })
		if got, _ := memTicks(t, after); fmt.Sprint(got) != fmt.Sprint(sums) {
			t.Fatalf("orphan's memory changed: %v, was %v", got, sums)
		}
		t.Logf("leader %s killed during the migration of orphan %s -> %s: it ended running on %s only", leader, src, dst, where)
		if out, err := c.script("up"); err != nil {
			t.Fatalf("restarting %s: %v\n%s", leader, err, out)
		}
	})
}

// waitUntil waits until the container's log (read through host) satisfies ok, and returns it.
func (c *devCluster) waitUntil(host, name string, ok func([]string) bool) []string {
	c.t.Helper()
	var lines []string
	c.eventually("the log of "+name, 60*time.Second, func() bool {
		lines = c.logLines(host, name)
		return ok(lines)
	})
	return lines
}
