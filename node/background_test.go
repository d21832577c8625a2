package node

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInBackgroundRunsAtTheLowestPriority(t *testing.T) {
	var nice int
	var tid int
	inBackground(func() {
		tid = unix.Gettid()
		b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
		if err != nil {
			t.Error(err)
			return
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		nice, _ = strconv.Atoi(f[16])
	})
	if nice != backgroundNice {
		t.Fatalf("background work ran at nice %d, want %d", nice, backgroundNice)
	}
	if tid == os.Getpid() {
		return // the main thread: Go parks it for good instead of ending it; it runs nothing else either
	}
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err == nil {
		// The thread ends with its goroutine (it was never unlocked); give the runtime a moment.
		for range 100 {
			if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); err != nil {
				return
			}
			unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
		}
		t.Fatalf("the low-priority thread %d lives on after its work; other goroutines would run at nice %d", tid, backgroundNice)
	}
}
