package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The cgroup freezer stops every process of a container where it is, as `runc pause` does, but without
// starting runc: `runc pause` costs 20-30 ms here (more on a busy host), and a migration's or a snapshot's
// downtime starts with it. runc reads the same freezer state, so `runc state` says "paused" and `runc
// resume` thaws it, whichever froze it.

// ErrNoFreezer says that the container's cgroup has no freezer this package can drive (the caller then uses
// runc pause/resume).
var ErrNoFreezer = errors.New("no cgroup freezer found for the container")

// cgroupRoot is where the cgroup filesystems are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// freezeTimeout bounds the wait for every process of a cgroup to be frozen.
const freezeTimeout = 10 * time.Second

// FreezeCgroup freezes the cgroup at path (a container's cgroupsPath, e.g. /ferry/vg-1/np) and returns once
// every process in it is frozen. If they are not frozen within the bound, the cgroup is thawed again and an
// error returned.
func FreezeCgroup(ctx context.Context, path string) error {
	f, err := findFreezer(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(f.control, []byte(f.freeze), 0); err != nil {
		return fmt.Errorf("freezing cgroup %s: %w", path, err)
	}
	deadline := time.Now().Add(freezeTimeout)
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 5*time.Millisecond) {
		frozen, err := f.frozen()
		if err != nil || frozen {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = os.WriteFile(f.control, []byte(f.thaw), 0)
			return fmt.Errorf("cgroup %s did not freeze within %s: %w", path, freezeTimeout, errors.Join(ctx.Err(), errors.New("thawed again")))
		}
		time.Sleep(wait)
	}
}

// ThawCgroup lets the processes of a frozen cgroup go on.
func ThawCgroup(path string) error {
	f, err := findFreezer(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(f.control, []byte(f.thaw), 0); err != nil {
		return fmt.Errorf("thawing cgroup %s: %w", path, err)
	}
	return nil
}

// freezer is one cgroup's freezer: cgroup v2 (cgroup.freeze, "frozen 1" in cgroup.events) or the v1
// freezer controller (freezer.state FROZEN/THAWED, FREEZING while it works).
type freezer struct {
	control, freeze, thaw string
	frozen                func() (bool, error)
}

func findFreezer(path string) (*freezer, error) {
	if path == "" || !filepath.IsAbs(path) || strings.Contains(path, "..") {
		return nil, fmt.Errorf("%w: cgroup path %q", ErrNoFreezer, path)
	}
	if v1 := filepath.Join(cgroupRoot, "freezer", path, "freezer.state"); exists(v1) {
		return &freezer{control: v1, freeze: "FROZEN", thaw: "THAWED", frozen: func() (bool, error) {
			b, err := os.ReadFile(v1)
			return strings.TrimSpace(string(b)) == "FROZEN", err
		}}, nil
	}
	dir := filepath.Join(cgroupRoot, path)
	if v2 := filepath.Join(dir, "cgroup.freeze"); exists(v2) {
		events := filepath.Join(dir, "cgroup.events")
		return &freezer{control: v2, freeze: "1", thaw: "0", frozen: func() (bool, error) {
			b, err := os.ReadFile(events)
			for _, l := range strings.Split(string(b), "\n") {
				if l == "frozen 1" {
					return true, err
				}
			}
			return false, err
		}}, nil
	}
	return nil, fmt.Errorf("%w: cgroup %s", ErrNoFreezer, path)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
