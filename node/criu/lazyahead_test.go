package criu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLazyPagesAhead: a daemon started before its checkpoint exists is fed one and serves a real lazy
// restore of it to the end; a daemon fed a directory without the images it needs, or one that died, fails at
// once with an error instead of waiting.
func TestLazyPagesAhead(t *testing.T) {
	requireCRIU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	images, work := filepath.Join(dir, "images"), filepath.Join(dir, "work")
	if err := os.Mkdir(images, 0o700); err != nil {
		t.Fatal(err)
	}
	lp, err := LaunchLazyPagesAhead(Exec{}, work, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lp.Stop()

	pid := startVictim(ctx, t)
	if out, err := exec.CommandContext(ctx, "criu", "dump", "-t", strconv.Itoa(pid), "-D", images, "-o", "dump.log", "-v4").CombinedOutput(); err != nil {
		t.Fatalf("criu dump: %v\n%s", err, out)
	}
	time.Sleep(100 * time.Millisecond) // the daemon is up by now, waiting in its first read
	if lp.Exited() {
		t.Fatalf("the daemon started ahead exited before it was fed; see %s", lp.log)
	}
	if err := lp.Feed(ctx, images); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	for _, name := range aheadImages {
		if fi, err := os.Lstat(filepath.Join(work, "images", name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s in the daemon's directory is %v (%v), want a link to the checkpoint's", name, fi.Mode(), err)
		}
	}
	restored := lazyRestore(ctx, t, images, work)
	if err := lp.Wait(ctx); err != nil {
		t.Fatalf("the daemon did not serve every page: %v", err)
	}
	runsOn(t, restored, "after the copy")

	// Fed a directory without a checkpoint: an error naming what is missing.
	lp2, err := LaunchLazyPagesAhead(Exec{}, filepath.Join(dir, "work2"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lp2.Stop()
	if err := lp2.Feed(ctx, t.TempDir()); err == nil || !strings.Contains(err.Error(), "inventory.img") {
		t.Fatalf("Feed of an empty directory: %v, want an error naming inventory.img", err)
	}
	// A daemon that died: Feed does not wait for it.
	lp3, err := LaunchLazyPagesAhead(Exec{}, filepath.Join(dir, "work3"), 0)
	if err != nil {
		t.Fatal(err)
	}
	lp3.Stop()
	_ = lp3.Wait(ctx)
	start := time.Now()
	if err := lp3.Feed(ctx, images); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Feed to a dead daemon: %v after %s", err, time.Since(start))
	}
}
