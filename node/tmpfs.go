package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ferryhq/ferry/node/archive"
	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/runtime"
)

// captureTmpfs archives the files of the container's own tmpfs (runtime.OwnTmpfs), seen through its init
// process pid, into checkpoint directory dir. The container must be frozen, so that they agree with the
// memory CRIU dumps. The mounts below them (/dev/pts, /dev/shm, /dev/mqueue) are recorded as directories
// only: CRIU saves each of those itself.
func captureTmpfs(ctx context.Context, pid int, dir string) error {
	if pid <= 0 {
		return errors.New("capturing /dev and /dev/shm: the container has no process")
	}
	if err := os.MkdirAll(filepath.Join(dir, checkpoint.TmpfsDir), 0o700); err != nil {
		return err
	}
	root := filepath.Join("/proc", strconv.Itoa(pid), "root")
	for _, t := range runtime.OwnTmpfs {
		if err := writeTree(ctx, filepath.Join(root, t.Destination), checkpoint.TmpfsFile(dir, t.Key),
			archive.WriteOptions{OneFileSystem: true}); err != nil {
			return fmt.Errorf("capturing the container's %s: %w", t.Destination, err)
		}
	}
	return nil
}

// prepareTmpfs mounts, for a restore of checkpoint dir into e, a new tmpfs for each of the container's own
// (see runtime.Tmpfs) holding the files the checkpoint recorded, where e's CRIU configuration tells CRIU to
// find them. A checkpoint without them (made before they were recorded) needs none: CRIU's images hold them.
// The caller unmounts them with runtime.UnmountOwnTmpfs once runc's restore returned.
func prepareTmpfs(ctx context.Context, e *entry, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, checkpoint.TmpfsDir)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	for _, t := range runtime.OwnTmpfs {
		if err := unpackTmpfs(ctx, t, checkpoint.TmpfsFile(dir, t.Key), e.tmpfsDir()); err != nil {
			_ = runtime.UnmountOwnTmpfs(e.tmpfsDir())
			return fmt.Errorf("preparing the container's %s: %w", t.Destination, err)
		}
	}
	return nil
}

func unpackTmpfs(ctx context.Context, t runtime.Tmpfs, tarPath, under string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return fmt.Errorf("the checkpoint lacks its files: %w", err)
	}
	defer f.Close()
	if err := t.Mount(under); err != nil {
		return err
	}
	_, err = archive.Extract(ctx, f, t.Dir(under), archive.ExtractOptions{Whiteouts: archive.WhiteoutsKeep})
	return err
}
