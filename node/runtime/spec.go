package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Network modes for SpecConfig.Net.
const (
	NetNone = "none" // a new network namespace with only loopback
	NetHost = "host" // the host's network namespace
)

// SpecConfig is what varies between containers; everything else is a fixed, conservative default.
type SpecConfig struct {
	Hostname    string
	RootfsPath  string
	Args        []string
	Env         []string
	Cwd         string
	MemoryBytes int64  // 0: no limit
	Net         string // NetNone (default) or NetHost
	CgroupsPath string // per node, e.g. /ferry/vg-1/np, so that nodes sharing a kernel never collide
	// CriuConfig is a CRIU configuration file that runc hands to CRIU when it checkpoints or restores this
	// container (the org.criu.config annotation; it replaces runc's default, /etc/criu/runc.conf). Empty:
	// runc's default.
	CriuConfig string
}

// CRIU dumps the content of every tmpfs in a container with tar and gzip (two processes) and unpacks it the
// same way on restore: 15-50 ms per tmpfs on each side of a migration's downtime. None of a container's tmpfs
// goes that way:
//   - two hold nothing: the empty, read-only tmpfs that runc mounts over each masked directory that exists on
//     the host (/proc/acpi, /sys/firmware, ...). CriuConfig marks those as external mounts under the key
//     MaskKey on dump, and binds the node's own empty read-only directory (mounted by the agent) in their
//     place on restore, so they cost nothing on either side and still hide what they hid;
//   - /dev and /dev/shm (OwnTmpfs) are external mounts too; their files travel beside CRIU's images (see
//     Tmpfs).

// MaskKey names the masked directories in CRIU's images (external mounts).
const MaskKey = "ferry-mask"

// maskedDirs are the directories among the spec's masked paths (files are masked with /dev/null, which runc
// already gives CRIU as an external mount).
var maskedDirs = []string{"/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware"}

// CriuConfig returns the content of the CRIU configuration (see SpecConfig.CriuConfig) for a container on
// network net, where maskDir is the node's empty read-only directory for masked directories (see above) and
// tmpfsDir, if not empty, the directory under which the container's own tmpfs are mounted for a restore (see
// Tmpfs.Dir); empty, CRIU saves them itself. Both sides read the same file: CRIU uses the lines that name a
// mount point when it dumps and the lines that name a key when it restores, and ignores the others (no mount
// has such a mount point or key).
//
// A container with its own network namespace (NetNone) holds only loopback, so no packet from outside can
// arrive while CRIU works, and locking it (iptables rules added in the namespace before the dump and removed
// after, while the container is frozen) only costs time: its configuration skips the lock. A container on
// the host's network keeps CRIU's default lock.
func CriuConfig(net, maskDir, tmpfsDir string) string {
	var b strings.Builder
	if net != NetHost {
		b.WriteString("network-lock skip\n")
	}
	for _, d := range maskedDirs {
		fmt.Fprintf(&b, "external mnt[%s]:%s\n", d, MaskKey)
	}
	fmt.Fprintf(&b, "external mnt[%s]:%s\n", MaskKey, maskDir)
	if tmpfsDir != "" {
		for _, t := range OwnTmpfs {
			fmt.Fprintf(&b, "external mnt[%s]:%s\n", t.Destination, t.Key)
			fmt.Fprintf(&b, "external mnt[%s]:%s\n", t.Key, t.Dir(tmpfsDir))
		}
	}
	return b.String()
}

// DefaultEnv is added in front of a container's environment.
var DefaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}

// BuildSpec returns the OCI runtime spec for a container: its own PID, IPC, UTS and mount namespaces (and
// network namespace unless Net is host), a default capability set, and the usual /proc, /dev and /sys mounts.
func BuildSpec(c SpecConfig) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
		"CAP_KILL", "CAP_AUDIT_WRITE"}
	cwd := c.Cwd
	if cwd == "" {
		cwd = "/"
	}
	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: c.Hostname,
		Root:     &specs.Root{Path: c.RootfsPath},
		Process: &specs.Process{
			Args: c.Args,
			Env:  mergeEnv(DefaultEnv, c.Env),
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{},
			NoNewPrivileges: true,
		},
		Mounts: defaultMounts(),
		Linux: &specs.Linux{
			CgroupsPath: c.CgroupsPath,
			Namespaces:  namespaces(c.Net),
			Resources:   resources(c.MemoryBytes),
			MaskedPaths: append([]string{"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
				"/proc/timer_stats", "/proc/sched_debug"}, maskedDirs...),
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if c.CriuConfig != "" {
		s.Annotations = map[string]string{"org.criu.config": c.CriuConfig}
	}
	if c.Net == NetHost {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind",
			Source: "/etc/resolv.conf", Options: []string{"rbind", "ro"}})
	}
	return s
}

func namespaces(net string) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
	if net != NetHost {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	return ns
}

func resources(memory int64) *specs.LinuxResources {
	r := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if memory > 0 {
		m := memory
		r.Memory = &specs.LinuxMemory{Limit: &m}
	}
	return r
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		OwnTmpfs[0].spec(),
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		OwnTmpfs[1].spec(),
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
}

// mergeEnv returns base overridden by extra (KEY=VALUE, later wins), keeping first-seen order.
func mergeEnv(base, extra []string) []string {
	idx := map[string]int{}
	var out []string
	for _, kv := range append(append([]string{}, base...), extra...) {
		k := kv
		if i := strings.IndexByte(kv, '='); i >= 0 {
			k = kv[:i]
		}
		if j, ok := idx[k]; ok {
			out[j] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// WriteBundle writes spec as bundleDir/config.json (atomically).
func WriteBundle(bundleDir string, spec *specs.Spec) error {
	if err := os.MkdirAll(bundleDir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding runtime spec: %w", err)
	}
	return WriteFileAtomic(filepath.Join(bundleDir, "config.json"), b, 0o600)
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it and renames it into place.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
