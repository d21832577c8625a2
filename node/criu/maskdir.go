package criu

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maskDirName, in a node's data directory, is the empty read-only directory that restores bind in place of a
// container's masked directories (see runtime.CriuConfig).
const maskDirName = "criu-mask"

// MaskDir prepares the node's empty read-only directory for masked directories under dataDir and returns its
// path: a read-only tmpfs of its own, so that nothing can be written there and a container sees there what
// runc would have mounted (an empty read-only tmpfs). If the tmpfs cannot be mounted, the directory stays a
// plain empty one (CRIU still binds it read-only, as the mount was) and the error says why.
func MaskDir(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, maskDirName)
	if err := os.MkdirAll(dir, 0o555); err != nil {
		return dir, err
	}
	if isTmpfs(dir) {
		return dir, nil
	}
	if err := unix.Mount("ferry-mask", dir, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555"); err != nil {
		return dir, fmt.Errorf("mounting an empty read-only tmpfs on %s: %w", dir, err)
	}
	return dir, nil
}

// ReleaseMaskDir unmounts the tmpfs MaskDir mounted under dataDir, if any. Containers restored with it keep
// their own mounts of it.
func ReleaseMaskDir(dataDir string) {
	dir := filepath.Join(dataDir, maskDirName)
	if isTmpfs(dir) {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	}
}
