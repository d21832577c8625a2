package criu

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	gocriu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
)

// MinVersion is the oldest CRIU release ferry accepts, encoded as go-criu does (major*10000 + minor*100 + sub).
const MinVersion = 40200

// Feature names, as `criu check --feature` spells them where CRIU has one.
const (
	// FeatureMemTrack is soft-dirty memory tracking: needed for pre-copy (iterative pre-dump).
	FeatureMemTrack = "mem_dirty_track"
	// FeatureLazyPages is userfaultfd support for lazy restore: needed for post-copy and lazy clones.
	FeatureLazyPages = "uffd"
	// FeatureLazyPagesNonCoop is non-cooperative userfaultfd (fork/remap events during lazy restore).
	FeatureLazyPagesNonCoop = "uffd-noncoop"
	// FeatureTCPRepair is TCP repair mode for established connections (half-closed sockets check).
	FeatureTCPRepair = "tcp_half_closed"
	// FeatureNetworkLock means CRIU can lock a container's network during a dump (iptables-restore on PATH).
	FeatureNetworkLock = "network_lock"
	// FeaturePidfdStore lets CRIU keep pidfds between pre-dump rounds to detect PID reuse.
	FeaturePidfdStore = "pidfd_store"
)

// Features is what a probe found.
type Features struct {
	// Path is the criu binary probed.
	Path string `json:"path"`
	// Version is CRIU's version as "major.minor.sub".
	Version string `json:"version"`
	// VersionCode is go-criu's integer encoding of Version.
	VersionCode int `json:"version_code"`
	// CheckOK is whether `criu check` passed; CheckOutput holds its last lines when it did not.
	CheckOK     bool   `json:"check_ok"`
	CheckOutput string `json:"check_output,omitempty"`
	// Features maps each probed feature name to whether it is available.
	Features map[string]bool `json:"features"`
	// ProbedAt is when the probe ran; Took is how long it took.
	ProbedAt time.Time     `json:"probed_at"`
	Took     time.Duration `json:"took"`
}

// Has reports whether the named feature was found available.
func (f *Features) Has(name string) bool { return f != nil && f.Features[name] }

// Names returns the available features, sorted.
func (f *Features) Names() []string {
	var out []string
	for k, ok := range f.Features {
		if ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// ProbeConfig says which criu to probe. The zero value probes "criu" on PATH.
type ProbeConfig struct {
	// Binary is the criu executable; empty means "criu" from PATH.
	Binary string
}

// Probe checks CRIU's version (through go-criu's VERSION call), runs `criu check`, and checks each feature
// that decides what this node can do: soft-dirty tracking and lazy pages through go-criu's FEATURE_CHECK call,
// the rest with `criu check --feature`. A missing or too old CRIU is an error; a failed `criu check` is
// reported in Features.CheckOK (the agent still starts, but refuses checkpoints).
func Probe(ctx context.Context, cfg ProbeConfig) (*Features, error) {
	start := time.Now()
	bin := cfg.Binary
	if bin == "" {
		bin = "criu"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotFound, err)
	}
	f := &Features{Path: path, Features: map[string]bool{}, ProbedAt: start}
	c := gocriu.MakeCriu()
	c.SetCriuPath(path)
	code, err := c.GetCriuVersion()
	if err != nil {
		return nil, fmt.Errorf("asking %s for its version: %w", path, err)
	}
	f.VersionCode = code
	f.Version = fmt.Sprintf("%d.%d.%d", code/10000, code/100%100, code%100)
	if code < MinVersion {
		return f, fmt.Errorf("%w: found %s at %s", ErrTooOld, f.Version, path)
	}
	f.CheckOK, f.CheckOutput = runCheck(ctx, path)
	rpcFeatures(c, f)
	names := []string{FeatureMemTrack, FeatureLazyPages, FeatureLazyPagesNonCoop, FeatureTCPRepair}
	cli := make([]bool, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() { defer wg.Done(); cli[i] = checkFeature(ctx, path, name) }()
	}
	wg.Wait()
	for i, name := range names {
		// A feature counts only when `criu check --feature` agrees: go-criu's FEATURE_CHECK has been seen to
		// report soft-dirty tracking on a kernel built without it, where the command says "Dirty tracking is OFF".
		rpcSays, asked := f.Features[name]
		f.Features[name] = cli[i] && (!asked || rpcSays)
	}
	f.Features[FeatureNetworkLock] = hasNetworkLockTools()
	f.Took = time.Since(start)
	return f, nil
}

// rpcFeatures asks CRIU over its RPC interface (swrk) about the features go-criu knows.
func rpcFeatures(c *gocriu.Criu, f *Features) {
	yes := true
	got, err := c.FeatureCheck(&rpc.CriuFeatures{MemTrack: &yes, LazyPages: &yes, PidfdStore: &yes})
	if err != nil {
		return
	}
	f.Features[FeatureMemTrack] = got.GetMemTrack()
	f.Features[FeatureLazyPages] = got.GetLazyPages()
	f.Features[FeaturePidfdStore] = got.GetPidfdStore()
}

func runCheck(ctx context.Context, path string) (bool, string) {
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	if err == nil {
		return true, ""
	}
	return false, lastLines(string(out), 5)
}

func checkFeature(ctx context.Context, path, name string) bool {
	return exec.CommandContext(ctx, path, "check", "--feature", name).Run() == nil
}

func hasNetworkLockTools() bool {
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return false
		}
	}
	return true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
