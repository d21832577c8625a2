package criu

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKdatLauncherKeepsTheProbe(t *testing.T) {
	requireCRIU(t)
	if RunIsTmpfs() {
		t.Skip("/run is a tmpfs here: CRIU keeps its probe by itself and no launcher is made")
	}
	dir := t.TempDir()
	t.Cleanup(func() { ReleaseKdat(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := KdatLauncher(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	l := env.Criu
	if l != filepath.Join(dir, criuName) || env.Launcher != filepath.Join(dir, launcherName) || !isTmpfs(filepath.Join(dir, kdatDir)) {
		t.Fatalf("%+v, tmpfs mounted: %v", env, isTmpfs(filepath.Join(dir, kdatDir)))
	}
	// The host's /run is untouched: the bind mount stays in the launcher's namespace.
	if isTmpfs("/run") {
		t.Fatal("the host's /run became a tmpfs")
	}
	var took [2]time.Duration
	for i := range took {
		start := time.Now()
		f, err := Probe(ctx, ProbeConfig{Binary: l})
		if err != nil || !f.CheckOK {
			t.Fatalf("probe through the launcher: %v %+v", err, f)
		}
		took[i] = time.Since(start)
	}
	if _, err := os.Stat(filepath.Join(dir, kdatDir, "criu.kdat")); err != nil {
		t.Fatalf("CRIU did not keep its kernel probe in the node's tmpfs: %v", err)
	}
	if _, err := os.Stat("/run/criu.kdat"); err == nil {
		t.Log("note: the host's /run holds a criu.kdat of its own (written by something else)")
	}
	t.Logf("probe through the launcher: first %s, then %s", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
	ReleaseKdat(dir)
	if isTmpfs(filepath.Join(dir, kdatDir)) {
		t.Fatal("the tmpfs is still mounted after ReleaseKdat")
	}
}
