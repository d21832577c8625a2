package node

import (
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// backgroundNice is the CPU priority of work that may wait: the lowest.
const backgroundNice = 19

// inBackground runs fn on an OS thread of its own at the lowest CPU priority and returns when fn did. It is
// for work that should take only CPU nothing else wants, such as hashing a migrated checkpoint after its
// container runs again: in a drain, the next container's dump must not share the cores with it. fn must not
// start goroutines for its work (they would run at normal priority).
func inBackground(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread, with its priority, ends with this goroutine.
		goruntime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), backgroundNice)
		fn()
	}()
	<-done
}
