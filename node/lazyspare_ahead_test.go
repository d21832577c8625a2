package node

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
)

// fakeAheadLazyPages stands in for `criu lazy-pages` started ahead: like CRIU it reads inventory.img and
// pstree.img from its images directory before it listens (blocking on the named pipes until it is fed).
func fakeAheadLazyPages(t *testing.T) string {
	return fakeCRIU(t, "cd \"$5\" || exit 1\n"+
		"cat \"$3/inventory.img\" > /dev/null || exit 1\ncat \"$3/pstree.img\" > /dev/null || exit 1\n"+
		": > lazy-pages.socket\nexec sleep 300\n")
}

// A snapshot's copy on its way: the clones' daemons start during the copy, do not listen before it arrived,
// serve a clone once it did, and are stopped if it does not arrive.
func TestLazySparesAheadOfACopy(t *testing.T) {
	bin := fakeAheadLazyPages(t)
	ck := &checkpoint.Checkpoint{ID: checkpoint.NewID(time.Now()), Dir: t.TempDir()}
	if err := os.MkdirAll(ck.ImagesDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"inventory.img", "pstree.img", "pages-1.img"} {
		if err := os.WriteFile(filepath.Join(ck.ImagesDir(), name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()

	t.Run("the copy arrives", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		arrived := s.expect(ck.ID, 2)
		pids := spareDirs(t, dir, 2)
		time.Sleep(200 * time.Millisecond)
		for name := range pids {
			if _, err := os.Stat(filepath.Join(dir, name, "lazy-pages.socket")); err == nil {
				t.Fatalf("spare %s listens before its snapshot arrived", name)
			}
		}
		arrived(ck)
		start, end := s.begin(ck)
		defer end()
		work := filepath.Join(t.TempDir(), "restore-work")
		lp, _, err := start(ctx, work)
		if err != nil {
			t.Fatal(err)
		}
		defer lp.Stop()
		found := false
		for _, pid := range pids {
			found = found || pid == lp.Pid()
		}
		if !found {
			t.Fatalf("the clone got daemon %d, not one started during the copy (%v)", lp.Pid(), pids)
		}
		if _, err := os.Stat(filepath.Join(work, "lazy-pages.socket")); err != nil {
			t.Fatalf("the daemon handed over does not listen in the clone's work directory: %v", err)
		}
		if target, err := os.Readlink(filepath.Join(work, "images", "pages-1.img")); err != nil || target != filepath.Join(ck.ImagesDir(), "pages-1.img") {
			t.Fatalf("the daemon's images do not lead to the snapshot's: %q, %v", target, err)
		}
	})

	t.Run("the copy fails", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "spares")
		s, _, _ := newTestSpares(t, dir, bin)
		arrived := s.expect(ck.ID, 2)
		pids := spareDirs(t, dir, 2)
		arrived(nil)
		deadline := time.Now().Add(5 * time.Second)
		for {
			ents, _ := os.ReadDir(dir)
			if len(ents) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("spares of a copy that failed are still there: %d directories", len(ents))
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, pid := range pids {
			if processAlive(pid) {
				t.Fatalf("daemon %d of a copy that failed still runs", pid)
			}
		}
		if lp, _ := s.take(ctx, ck.ID, filepath.Join(t.TempDir(), "w")); lp != nil {
			t.Fatal("a clone took a spare of a copy that failed")
		}
	})
}

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }
