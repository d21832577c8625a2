package agent

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// listenRootOnly listens on a unix socket that only root can use: the data directory is 0700 and the socket
// 0600. A stale socket left by a dead agent is replaced; one that answers belongs to a running agent: an error.
func listenRootOnly(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("an agent is already serving %s; stop it first or use another --data-dir", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o077)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// fastMemberlist is memberlist's local-network configuration with quicker failure detection, for hosts that
// share one machine (tests, the local dev cluster): a cut link shows as suspect within about a second and
// dead a few seconds later.
func fastMemberlist() *memberlist.Config {
	c := memberlist.DefaultLocalConfig()
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.SuspicionMult = 3
	c.GossipInterval = 100 * time.Millisecond
	c.PushPullInterval = 5 * time.Second
	return c
}
