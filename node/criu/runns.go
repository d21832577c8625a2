package criu

import (
	"fmt"
	"os/exec"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// CRIU keeps its kernel probe in /run only when /run is a tmpfs; on a host where it is not, the node gives
// CRIU a tmpfs of its own on /run in a private mount namespace (see KdatLauncher). A runc that runs CRIU
// (checkpoint, restore) must itself run in such a namespace, since CRIU works with files runc opened, and so
// do the CRIU daemons the node starts itself (lazy-pages). StartWithRun makes that namespace without a
// launcher process: a shell script, unshare and mount cost four program starts (about 25 ms here, more on a
// busy host) on a migration's downtime and on a clone's way when it has no spare daemon.

// StartWithRun starts cmd in a new private mount namespace where dir is bind-mounted on /run. The namespace is
// made on an OS thread of this process that is then given up: the thread unshares its mount namespace,
// mounts, and starts cmd (a new process inherits the namespace of the thread that starts it); the thread
// ends with its goroutine and never runs other Go code. Nothing mounted there is seen by the host.
func StartWithRun(cmd *exec.Cmd, dir string) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: a goroutine that ends locked takes its thread with it.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("a mount namespace for CRIU: unshare: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("a mount namespace for CRIU: making it private: %w", err)
			return
		}
		if err := unix.Mount(dir, "/run", "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("a mount namespace for CRIU: binding %s on /run: %w", dir, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// Exec is how the node starts CRIU processes of its own: the CRIU binary, and the tmpfs it gets as /run (empty:
// the host's /run, a tmpfs where CRIU keeps its probe itself).
type Exec struct {
	Path   string // empty: "criu" from PATH
	RunDir string
}

func (x Exec) path() string {
	if x.Path == "" {
		return "criu"
	}
	return x.Path
}

// Start starts cmd (made with x's path) with x's /run.
func (x Exec) Start(cmd *exec.Cmd) error {
	if x.RunDir == "" {
		return cmd.Start()
	}
	return StartWithRun(cmd, x.RunDir)
}
