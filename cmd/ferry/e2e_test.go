package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
)

const numberPrinter = `i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done`

// checkSequence fails unless lines are the numbers 0, 1, 2, ... each once and in order. "Terminated" is let
// through: busybox sh prints it when `ferry stop` sends SIGTERM to its sleep (the shell itself, the
// container's init, ignores SIGTERM and goes on counting until the SIGKILL that follows).
func checkSequence(t *testing.T, lines []string) {
	t.Helper()
	kept := lines[:0:0]
	for _, l := range lines {
		if l != "Terminated" {
			kept = append(kept, l)
		}
	}
	lines = kept
	for i, l := range lines {
		if l != strconv.Itoa(i) {
			t.Fatalf("log line %d is %q, want %d (a number missing, repeated or restarted): ...%v", i, l, i, lines[max(0, i-3):min(len(lines), i+3)])
		}
	}
}

func TestNumberPrinterCheckpointRestore(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	a.must("run", "--name", "np", "busybox", "--", "sh", "-c", numberPrinter)
	a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= 10 })
	follow := a.background("logs", "-f", "np")

	var ck node.CheckpointReport
	if err := json.Unmarshal([]byte(a.must("checkpoint", "np", "-o", "json")), &ck); err != nil {
		t.Fatal(err)
	}
	if ck.CRIU == nil || ck.CRIU.PagesWritten == 0 {
		t.Fatalf("checkpoint report has no CRIU statistics: %+v", ck)
	}
	before := strings.Split(strings.TrimSpace(a.must("logs", "np")), "\n")
	if ps := a.must("ps"); !strings.Contains(ps, "checkpointed") {
		t.Fatalf("ps after checkpoint does not show checkpointed:\n%s", ps)
	}
	time.Sleep(500 * time.Millisecond)
	if again := strings.Split(strings.TrimSpace(a.must("logs", "np")), "\n"); len(again) != len(before) {
		t.Fatalf("the log grew while the container was checkpointed: %d -> %d lines", len(before), len(again))
	}
	a.must("restore", "np")
	lines := a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= len(before)+10 })
	checkSequence(t, lines)
	t.Logf("number printer: %d lines before the checkpoint, %d after restore, sequence unbroken", len(before), len(lines))
	a.must("stop", "np")
	// logs -f followed the container across the checkpoint and restore, and ended when it was stopped.
	out, err := follow.wait(10 * time.Second)
	if err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	followed := strings.Split(strings.TrimSpace(out), "\n")
	if len(followed) < len(lines) {
		t.Fatalf("logs -f printed %d lines, the log has at least %d", len(followed), len(lines))
	}
	checkSequence(t, followed)
	a.must("rm", "np")
}

var (
	tickRE = regexp.MustCompile(`^tick=(\d+)\b`)
	sumRE  = regexp.MustCompile(`\bsum=([0-9a-f]+)\b`)
)

// memTicks parses memload's output lines: the sums of its memory it printed and its last tick.
func memTicks(t *testing.T, lines []string) (sums map[string]bool, lastTick int) {
	sums = map[string]bool{}
	for _, l := range lines {
		if m := sumRE.FindStringSubmatch(l); m != nil {
			sums[m[1]] = true
		}
		if m := tickRE.FindStringSubmatch(l); m != nil {
			lastTick, _ = strconv.Atoi(m[1])
		}
	}
	return sums, lastTick
}

func TestMemoryAndWritableLayerSurviveRestore(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	a.must("run", "--name", "mem", "--env", "GREETING=hello from ferry", "--memory", "256m", "busybox", "--",
		"sh", "-c", `echo "$GREETING" > /data/greeting; exec /bin/memload -mib 64 -interval 100ms -sum-every 3`)
	before := a.waitLog("mem", 60*time.Second, func(l []string) bool { _, tick := memTicks(t, l); return tick >= 6 })
	sumsBefore, tickBefore := memTicks(t, before)
	if len(sumsBefore) != 1 {
		t.Fatalf("memload's sum changed while it ran: %v", sumsBefore)
	}

	start := time.Now()
	var ck node.CheckpointReport
	if err := json.Unmarshal([]byte(a.must("checkpoint", "mem", "-o", "json")), &ck); err != nil {
		t.Fatal(err)
	}
	ckTime := time.Since(start)
	start = time.Now()
	var rs node.RestoreReport
	if err := json.Unmarshal([]byte(a.must("restore", "mem", "-o", "json")), &rs); err != nil {
		t.Fatal(err)
	}
	rsTime := time.Since(start)
	t.Logf("64 MiB workload: checkpoint %s (agent %s, CRIU frozen %s, images %d MiB), restore %s (agent %s, CRIU restore %s)",
		ckTime.Round(time.Millisecond), ck.Took.Round(time.Millisecond), ck.CRIU.FrozenTime, ck.Size>>20,
		rsTime.Round(time.Millisecond), rs.Took.Round(time.Millisecond), rs.CRIU.RestoreTime)

	after := a.waitLog("mem", 30*time.Second, func(l []string) bool { _, tick := memTicks(t, l); return tick >= tickBefore+6 })
	sumsAfter, _ := memTicks(t, after)
	if len(sumsAfter) != 1 {
		t.Fatalf("memory changed across checkpoint and restore: sums %v", sumsAfter)
	}
	if got := strings.TrimSpace(a.must("exec", "mem", "--", "cat", "/data/greeting")); got != "hello from ferry" {
		t.Fatalf("file written before the checkpoint reads %q after restore", got)
	}
	if got := strings.TrimSpace(a.must("exec", "mem", "--", "sh", "-c", "echo $GREETING")); got != "hello from ferry" {
		t.Fatalf("environment after restore: %q", got)
	}
	limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory/ferry", a.name, "mem", "memory.limit_in_bytes"))
	if err != nil || strings.TrimSpace(string(limit)) != strconv.Itoa(256<<20) {
		t.Fatalf("memory limit after restore: %q (%v), want %d", limit, err, 256<<20)
	}
	a.must("rm", "--force", "mem")
}

func TestCheckpointLeaveRunning(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	a.must("run", "--name", "np", "busybox", "--", "sh", "-c", numberPrinter)
	a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= 5 })
	out := a.must("checkpoint", "--leave-running", "np")
	if !strings.Contains(out, "still running") || !strings.Contains(out, "CRIU: freezing") {
		t.Fatalf("checkpoint output lacks the state or CRIU's statistics:\n%s", out)
	}
	n := len(a.waitLog("np", 5*time.Second, func(l []string) bool { return true }))
	lines := a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= n+5 })
	checkSequence(t, lines)
	if ps := a.must("ps"); !strings.Contains(ps, "running") {
		t.Fatalf("container not running after --leave-running:\n%s", ps)
	}
}

// A checkpoint or snapshot that stops its container but cannot be finished after CRIU's dump (its manifest
// cannot be written: an injected fault) costs nothing: the container, frozen until then, goes on counting,
// and nothing of the checkpoint is left.
func TestStoppingDumpThatCannotFinishKeepsTheContainer(t *testing.T) {
	a := startAgent(t, "--fault", "break-manifest")
	a.importBusybox()
	a.must("run", "--name", "np", "busybox", "--", "sh", "-c", numberPrinter)
	a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= 5 })
	for _, args := range [][]string{{"checkpoint", "np"}, {"snapshot", "create", "np", "--stop"}} {
		if r := a.ferry(args...); r.code == 0 || !strings.Contains(r.stderr, "injected") {
			t.Fatalf("ferry %s with a broken manifest: exit %d, stderr %q; want a failure naming the injected fault", strings.Join(args, " "), r.code, r.stderr)
		}
		var list []node.Container
		if err := json.Unmarshal([]byte(a.must("ps", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].State != node.StateRunning {
			t.Fatalf("after a failed ferry %s: ps %+v (%v), want np running", strings.Join(args, " "), list, err)
		}
		n := len(a.waitLog("np", 5*time.Second, func(l []string) bool { return true }))
		checkSequence(t, a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= n+3 }))
	}
	if out := a.must("snapshot", "ls", "-o", "json"); strings.Contains(out, "\"id\"") {
		t.Fatalf("a snapshot is listed after the failed one:\n%s", out)
	}
	for _, sub := range []string{"checkpoints", "snapshots"} {
		entries, _ := os.ReadDir(filepath.Join(a.dataDir, sub))
		for _, e := range entries {
			if sub == "snapshots" || e.Name() != "np" {
				t.Fatalf("left behind in the data dir: %s/%s", sub, e.Name())
			}
			if inner, _ := os.ReadDir(filepath.Join(a.dataDir, sub, e.Name())); len(inner) > 0 {
				t.Fatalf("left behind in the data dir: %s/np/%s", sub, inner[0].Name())
			}
		}
	}
	a.must("stop", "--time", "1s", "np")
}

// A snapshot whose dump stopped its container is all that is left of it: when the cluster does not take its
// record, its node keeps the record beside it, never sweeps it as forgotten, and writes it itself later.
func TestStoppingSnapshotWhoseRecordFailsIsRecordedByItsNode(t *testing.T) {
	a := startAgent(t, "--fault", "lose-snapshot-record")
	a.importBusybox()
	a.must("run", "--name", "np", "busybox", "--", "sh", "-c", numberPrinter)
	before := a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= 5 })
	r := a.ferry("snapshot", "create", "np", "--stop")
	if r.code == 0 || !strings.Contains(r.stderr, "recording it failed") || !strings.Contains(r.stderr, "records it once") {
		t.Fatalf("snapshot create --stop whose record fails: exit %d, stderr %q; want the failure and where the data stays", r.code, r.stderr)
	}
	var list []node.Container
	if err := json.Unmarshal([]byte(a.must("ps", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].State != node.StateStopped {
		t.Fatalf("after the stopping snapshot: ps %+v (%v), want np stopped", list, err)
	}
	var snaps []api.SnapshotView
	deadline := time.Now().Add(60 * time.Second)
	for len(snaps) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the node did not record the snapshot within 60s")
		}
		time.Sleep(time.Second)
		if err := json.Unmarshal([]byte(a.must("snapshot", "ls", "np", "-o", "json")), &snaps); err != nil {
			t.Fatal(err)
		}
	}
	if len(snaps) != 1 || snaps[0].Node == "" {
		t.Fatalf("snapshot ls: %+v; want the one snapshot, on its node", snaps)
	}
	// Its kept record goes once the cluster has it.
	deadline = time.Now().Add(20 * time.Second)
	for {
		entries, _ := filepath.Glob(filepath.Join(a.dataDir, "snapshots", "*.record"))
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kept record is left after the snapshot was recorded: %v", entries)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The data is whole: loaded, the container counts on from where the dump stopped it.
	a.must("snapshot", "load", "np", snaps[0].ID)
	lines := a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= len(before)+10 })
	checkSequence(t, lines)
	a.must("stop", "--time", "1s", "np")
}

func TestExecStopAndRemove(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	a.must("run", "--name", "sl", "busybox", "--", "sleep", "1000")
	if out := a.must("exec", "sl", "--", "echo", "hi"); strings.TrimSpace(out) != "hi" {
		t.Fatalf("exec output %q", out)
	}
	if r := a.ferry("exec", "sl", "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Fatalf("exec exit status %d, want 7", r.code)
	}
	a.fails(1, "is running", "rm", "sl")
	a.must("stop", "--time", "1s", "sl")
	var list []node.Container
	if err := json.Unmarshal([]byte(a.must("ps", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].State != node.StateStopped {
		t.Fatalf("ps -o json after stop: %+v (%v)", list, err)
	}
	a.must("rm", "sl")
	if out := a.must("ps"); strings.Contains(out, "sl") {
		t.Fatalf("removed container still listed:\n%s", out)
	}
}

func TestAgentRestartReattaches(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	a.must("run", "--name", "np", "busybox", "--", "sh", "-c", numberPrinter)
	a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= 5 })
	a.kill()
	time.Sleep(500 * time.Millisecond)
	a.start()
	if ps := a.must("ps"); !strings.Contains(ps, "running") {
		t.Fatalf("after an agent restart the container is not reported running:\n%s", ps)
	}
	n := len(a.waitLog("np", 5*time.Second, func(l []string) bool { return true }))
	lines := a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= n+5 })
	checkSequence(t, lines)
	a.must("checkpoint", "np")
	a.must("restore", "np")
	lines = a.waitLog("np", 20*time.Second, func(l []string) bool { return len(l) >= n+15 })
	checkSequence(t, lines)
	a.must("stop", "--time", "1s", "np")
}
