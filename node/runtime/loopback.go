package runtime

import (
	"fmt"
	"os"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// LoopbackUp sets the loopback interface of process pid's network namespace up. A container restored by
// CRIU into a new network namespace of its own (runc restore of a --net none container) gets that
// namespace with its loopback down, so that services listening on 127.0.0.1 would be unreachable from
// inside it; runc brings it up only when it creates a container, not when it restores one.
func LoopbackUp(pid int) error {
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return fmt.Errorf("network namespace of %d: %w", pid, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread enters the container's namespace and is never given back: a goroutine that ends locked
		// to its thread ends the thread too.
		goruntime.LockOSThread()
		errc <- loopbackUpHere(int(ns.Fd()))
	}()
	return <-errc
}

func loopbackUpHere(nsFd int) error {
	if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering the network namespace: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading the flags of lo: %w", err)
	}
	flags := ifr.Uint16()
	if flags&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(flags | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	return nil
}
