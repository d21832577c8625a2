package node

import (
	"math"

	"golang.org/x/sys/unix"
)

// closeInheritedOnExec marks every descriptor above stderr close-on-exec. The agent's own descriptors are
// already, but one it inherited from whatever started it (a shell's lock file, a socket of a supervisor) is
// not, and would otherwise reach every shim, runc, CRIU and container process it starts: a container would
// hold a file of the host, and CRIU refuses to dump a process that holds a file lock it cannot restore.
func closeInheritedOnExec() error {
	return unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
}
