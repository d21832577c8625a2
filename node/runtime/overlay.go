package runtime

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountOverlay mounts an overlayfs at target: lower directories top first (the image's layers), upper as the
// container's writable layer, work as overlayfs's scratch directory on the same filesystem as upper.
func MountOverlay(lower []string, upper, work, target string) error {
	if len(lower) == 0 {
		return errors.New("overlay mount needs at least one lower layer")
	}
	for _, d := range append([]string{upper, work, target}, lower...) {
		if strings.ContainsAny(d, ",:") {
			return fmt.Errorf("path %q cannot be used in an overlay mount (it contains ',' or ':')", d)
		}
	}
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting overlay at %s: %w", target, err)
	}
	return nil
}

// Unmount unmounts target if it is mounted; a target that is not mounted is not an error.
func Unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", target, err)
}

// IsMounted reports whether target is a mount point.
func IsMounted(target string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(target, &st) != nil || unix.Lstat(target+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
