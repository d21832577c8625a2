package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Tmpfs is one of a container's two tmpfs that hold files of its own: /dev (its device nodes, links and the
// mount points below it) and /dev/shm.
//
// CRIU would save each with tar and gzip (three processes on each side of a dump or restore, 15-25 ms per
// tmpfs here). Instead, the container's CRIU configuration marks them as external mounts under Key: the agent
// archives their files itself while the container is frozen, and on restore mounts a new tmpfs with the same
// options, unpacks the files into it and CRIU binds it in place of the old one. Inside, the container sees
// the same mount (type, source, options) with the same files.
type Tmpfs struct {
	Key         string // CRIU's name for it (external mount)
	Destination string // in the container
	Source      string
	Options     []string // as in the spec: mount flags and tmpfs options
}

// OwnTmpfs are /dev and /dev/shm, as the spec mounts them.
var OwnTmpfs = []Tmpfs{
	{Key: "ferry-dev", Destination: "/dev", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	{Key: "ferry-shm", Destination: "/dev/shm", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
}

func (t Tmpfs) mount() (flags uintptr, data string) {
	var opts []string
	for _, o := range t.Options {
		switch o {
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "nodev":
			flags |= unix.MS_NODEV
		case "strictatime":
			flags |= unix.MS_STRICTATIME
		default:
			opts = append(opts, o)
		}
	}
	return flags, strings.Join(opts, ",")
}

// Dir is where, under dir, the tmpfs is mounted for a restore (see CriuConfig).
func (t Tmpfs) Dir(dir string) string { return filepath.Join(dir, t.Key) }

// Mount mounts a new, empty tmpfs like t's at t.Dir(dir), private (nothing mounted in it propagates
// elsewhere). Whatever was mounted there before is detached first.
func (t Tmpfs) Mount(dir string) error {
	target := t.Dir(dir)
	_ = Unmount(target)
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	flags, data := t.mount()
	if err := unix.Mount(t.Source, target, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mounting a tmpfs for %s at %s: %w", t.Destination, target, err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		_ = Unmount(target)
		return fmt.Errorf("making %s private: %w", target, err)
	}
	return nil
}

// UnmountOwnTmpfs detaches the tmpfs that OwnTmpfs' Mount put under dir, if any, and removes dir. A restored
// container keeps its own reference to them.
func UnmountOwnTmpfs(dir string) error {
	var errs []error
	for _, t := range OwnTmpfs {
		errs = append(errs, Unmount(t.Dir(dir)))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

func (t Tmpfs) spec() specs.Mount {
	return specs.Mount{Destination: t.Destination, Type: "tmpfs", Source: t.Source, Options: append([]string(nil), t.Options...)}
}
