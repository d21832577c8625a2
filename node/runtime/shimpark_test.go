package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeParkedShim stands in for `ferry shim` started parked: it waits for its configuration on fd 4, writes
// what it got to $FAKE_SHIM_OUT and reports a container pid on fd 3, or exits if the pipe closes empty.
func fakeParkedShim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ferry")
	script := "#!/bin/sh\nconf=$(cat <&4)\n[ -n \"$conf\" ] || exit 0\n[ \"$" + ShimParkedEnv + "\" = 1 ] || exit 3\n" +
		"printf '%s' \"$conf\" > \"$FAKE_SHIM_OUT\"\necho '{\"pid\":4242}' >&3\nexec 3>&- 4<&-\nexec sleep 300\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestParkedShim(t *testing.T) {
	bin := fakeParkedShim(t)
	out := filepath.Join(t.TempDir(), "conf.json")
	t.Setenv("FAKE_SHIM_OUT", out)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	p, err := ParkShim(bin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ShimConfig{Mode: ShimRestore, ID: "np", ShimLog: "/x/shim.log", ExitPath: filepath.Join(t.TempDir(), "exit"), Parked: p}
	st, err := StartShim(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(st.ShimPid, syscall.SIGKILL)
	if st.Pid != 4242 || st.ShimPid != p.cmd.Process.Pid {
		t.Fatalf("started %+v, want the parked shim (%d) reporting pid 4242", st, p.cmd.Process.Pid)
	}
	var got parkedConf
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(b, &got); err != nil || got.Config.ID != "np" || got.Config.Mode != ShimRestore || got.ShimLog != "/x/shim.log" {
		t.Fatalf("the shim got %s (%v)", b, err)
	}
	if _, err := StartShim(ctx, cfg); err == nil {
		t.Fatal("a parked shim was used twice")
	}

	// Discarded unused: it exits.
	p2, err := ParkShim(bin)
	if err != nil {
		t.Fatal(err)
	}
	pid := p2.cmd.Process.Pid
	p2.Discard()
	p2.Discard()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("a discarded parked shim (%d) still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A parked shim started from a thread at a low priority has all its threads back at nice 0 once boosted.
func TestParkedShimBoost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lowering a nice value needs root")
	}
	bin := fakeParkedShim(t)
	var p *ParkedShim
	var err error
	done := make(chan struct{})
	go func() { // start it from a thread at nice 19, as the agent's spares do
		defer close(done)
		goruntime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		p, err = ParkShim(bin)
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	defer p.Discard()
	if n := threadNice(t, p.Pid(), p.Pid()); n != 19 {
		t.Fatalf("the shim started at nice %d, want 19", n)
	}
	p.Boost()
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.Pid()))
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if n := threadNice(t, p.Pid(), tid); n != 0 {
			t.Errorf("thread %d of the boosted shim runs at nice %d", tid, n)
		}
	}
}

func threadNice(t *testing.T, pid, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}
