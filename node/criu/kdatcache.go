package criu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// CRIU probes the kernel when it starts (its "kerndat": which syscalls, memory tracking, socket options
// work), about a quarter of a second here, and keeps the result in /run/criu.kdat for the next run, but only
// when /run is a tmpfs, so that a reboot (a new kernel) drops it. On a host whose /run is not a tmpfs (a
// container, some CI machines) every CRIU run probes again: a checkpoint, a restore and a lazy-pages daemon
// each pay it, on a migration's downtime path.
//
// KdatLauncher fixes that for such hosts without touching the host's /run: it mounts a small tmpfs of the
// node's own (DATADIR/criu-run) and writes a launcher (DATADIR/with-criu-run) that runs a command in a private
// mount namespace where that tmpfs is bind-mounted on /run, and a CRIU script (DATADIR/criu) that runs CRIU
// through it. CRIU then keeps its probe there, and the tmpfs goes with a reboot as /run would. Everything
// else CRIU sees is as before: the containers' own mounts are in their namespaces.

const (
	kdatDir      = "criu-run"
	launcherName = "with-criu-run"
	criuName     = "criu"
)

// RunIsTmpfs reports whether the host's /run is a tmpfs (where CRIU keeps its kernel probe by itself).
func RunIsTmpfs() bool { return isTmpfs("/run") }

func isTmpfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// KdatEnv is what KdatLauncher prepared. On a host whose /run is a tmpfs it is the plain binary: Criu is
// binary and Launcher is empty.
type KdatEnv struct {
	// Criu is the executable to start CRIU with (go-criu's swrk, lazy-pages, the probe): a script that runs
	// the real CRIU through Launcher.
	Criu string
	// Launcher runs the command given as its arguments with the node's tmpfs as /run.
	Launcher string
	// RunDir is that tmpfs. A program that runs CRIU and hands it files it opened itself (runc checkpoint
	// and restore: CRIU mounts below the work dir runc opened) must itself run in such a namespace, with Real
	// as its CRIU (runtime.Runc.RunDir makes the namespace in-process, without Launcher).
	RunDir string
	// Real is the CRIU binary's absolute path.
	Real string
}

// KdatLauncher prepares the node's CRIU environment (see above) under dataDir for binary (empty: "criu" from
// PATH). The launcher is checked by running it; if it cannot work here, the error says why and the
// caller keeps binary. ReleaseKdat undoes the mount.
func KdatLauncher(ctx context.Context, dataDir, binary string) (KdatEnv, error) {
	plain := KdatEnv{Criu: binary, Real: binary}
	if RunIsTmpfs() {
		return plain, nil
	}
	if binary == "" {
		binary = "criu"
	}
	abs, err := exec.LookPath(binary)
	if err != nil {
		return plain, fmt.Errorf("finding %s: %w", binary, err)
	}
	if abs, err = filepath.Abs(abs); err != nil {
		return plain, err
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return plain, fmt.Errorf("a CRIU launcher needs unshare (util-linux): %w", err)
	}
	dir := filepath.Join(dataDir, kdatDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return plain, err
	}
	if !isTmpfs(dir) {
		if err := unix.Mount("ferry-criu-run", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m,mode=0700"); err != nil {
			return plain, fmt.Errorf("mounting a tmpfs on %s for CRIU's kernel probe: %w", dir, err)
		}
	}
	env := KdatEnv{Launcher: filepath.Join(dataDir, launcherName), Criu: filepath.Join(dataDir, criuName), Real: abs, RunDir: dir}
	// Private propagation: nothing mounted in there reaches the host (the bind on /run above all).
	scripts := map[string]string{
		env.Launcher: fmt.Sprintf(`#!/bin/sh
# Runs its arguments with this node's tmpfs as /run, where CRIU keeps its kernel probe between runs (the
# host's /run is not a tmpfs). Written by the ferry agent at start; do not edit.
exec %s --mount --propagation private -- /bin/sh -c 'mount --bind "$0" /run || exit 1; exec "$@"' %s "$@"
`, shellQuote(unshare), shellQuote(dir)),
		env.Criu: fmt.Sprintf(`#!/bin/sh
# CRIU with this node's tmpfs as /run (see %s). Written by the ferry agent at start; do not edit.
exec %s %s "$@"
`, launcherName, shellQuote(env.Launcher), shellQuote(abs)),
	}
	for path, text := range scripts {
		if err := os.WriteFile(path+".tmp", []byte(text), 0o700); err != nil {
			return plain, err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return plain, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, env.Criu, "--version").CombinedOutput(); err != nil {
		ReleaseKdat(dataDir)
		return plain, fmt.Errorf("the CRIU launcher %s does not run: %v: %s", env.Criu, err, strings.TrimSpace(string(out)))
	}
	return env, nil
}

// ReleaseKdat unmounts the tmpfs KdatLauncher mounted under dataDir, if any.
func ReleaseKdat(dataDir string) {
	dir := filepath.Join(dataDir, kdatDir)
	if isTmpfs(dir) {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
