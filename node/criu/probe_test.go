package criu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// requireCRIU skips (or, with CI=true, fails) when this host cannot run CRIU.
func requireCRIU(t *testing.T) {
	t.Helper()
	var missing string
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("criu"); err != nil {
		missing = "criu on PATH (run scripts/install-deps.sh)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test needs %s, and CI=true makes a missing prerequisite a failure", missing)
	}
	t.Skipf("skipping: needs %s", missing)
}

func TestProbe(t *testing.T) {
	requireCRIU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := Probe(ctx, ProbeConfig{})
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	t.Logf("criu %s at %s, check ok=%v, features %v (took %s)", f.Version, f.Path, f.CheckOK, f.Features, f.Took)
	if f.VersionCode < MinVersion {
		t.Fatalf("version %s below the minimum", f.Version)
	}
	if !f.CheckOK {
		t.Fatalf("criu check failed: %s", f.CheckOutput)
	}
	if !f.Has(FeatureNetworkLock) {
		t.Errorf("network lock tools missing; install-deps installs iptables")
	}
	for _, name := range []string{FeatureMemTrack, FeatureLazyPages, FeatureTCPRepair} {
		if _, ok := f.Features[name]; !ok {
			t.Errorf("feature %s not probed", name)
		}
	}
}

func TestProbeMissingBinary(t *testing.T) {
	_, err := Probe(context.Background(), ProbeConfig{Binary: "criu-that-does-not-exist"})
	if err == nil || !errors.Is(err, ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}

func TestReadStatsMissing(t *testing.T) {
	if _, err := ReadDumpStats(t.TempDir()); !errors.Is(err, ErrNoStats) {
		t.Fatalf("want ErrNoStats, got %v", err)
	}
}
