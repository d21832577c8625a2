package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A lazy-pages daemon reads two images as it starts, before it listens: inventory.img and pstree.img (the
// process tree it will serve). An incoming migration's images are only complete once the source's dump
// ended, yet starting the daemon then (a shell, the dynamic loader, CRIU's set-up: 60-130 ms here) would put
// its start on the container's downtime. So a daemon can be started ahead on an images directory of its
// own where those two images are named pipes: it does all of its start-up and then waits in its open of
// inventory.img. Once the checkpoint is in, Feed links every other image into that directory, writes the two
// images into their pipes, replaces the pipes by links too (so that any later open reads the real file), and
// waits until the daemon listens.

// aheadImages are the images the daemon reads before it listens, in the order it reads them.
var aheadImages = []string{"inventory.img", "pstree.img"}

// aheadFeedWait bounds how long Feed waits for the daemon to open one of those pipes.
const aheadFeedWait = 10 * time.Second

// LaunchLazyPagesAhead starts a lazy-pages daemon whose checkpoint is not there yet, in workDir (which it
// makes); Feed gives it the checkpoint.
func LaunchLazyPagesAhead(x Exec, workDir string, nice int) (*LazyPages, error) {
	ahead := filepath.Join(workDir, "images")
	if err := os.MkdirAll(ahead, 0o700); err != nil {
		return nil, err
	}
	for _, name := range aheadImages {
		if err := unix.Mkfifo(filepath.Join(ahead, name), 0o600); err != nil {
			return nil, fmt.Errorf("lazy-pages ahead: %w", err)
		}
	}
	lp, err := LaunchLazyPages(x, ahead, workDir, nice)
	if err != nil {
		return nil, err
	}
	lp.ahead = ahead
	return lp, nil
}

// Feed hands the checkpoint in imagesDir to a daemon started by LaunchLazyPagesAhead and waits until it
// listens. On an error the daemon is of no use (the caller stops it).
func (lp *LazyPages) Feed(ctx context.Context, imagesDir string) error {
	if lp.ahead == "" {
		return errors.New("lazy-pages: Feed on a daemon that was not started ahead")
	}
	ents, err := os.ReadDir(imagesDir)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(imagesDir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		if isAheadImage(de.Name()) {
			continue
		}
		if err := os.Symlink(filepath.Join(abs, de.Name()), filepath.Join(lp.ahead, de.Name())); err != nil {
			return fmt.Errorf("lazy-pages ahead: %w", err)
		}
	}
	for _, name := range aheadImages {
		if err := lp.feedPipe(ctx, filepath.Join(lp.ahead, name), filepath.Join(abs, name)); err != nil {
			return err
		}
		tmp := filepath.Join(lp.ahead, "."+name+".link")
		if err := os.Symlink(filepath.Join(abs, name), tmp); err != nil {
			return fmt.Errorf("lazy-pages ahead: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(lp.ahead, name)); err != nil {
			return fmt.Errorf("lazy-pages ahead: %w", err)
		}
	}
	return lp.Listening(ctx)
}

func isAheadImage(name string) bool { return slices.Contains(aheadImages, name) }

// feedPipe writes the file src into the named pipe once the daemon opened it for reading.
func (lp *LazyPages) feedPipe(ctx context.Context, pipe, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("lazy-pages ahead: the checkpoint has no %s: %w", filepath.Base(src), err)
	}
	deadline := time.Now().Add(aheadFeedWait)
	var fd int
	for {
		// Non-blocking: an open for writing fails with ENXIO until a reader has the pipe open, so a daemon
		// that died cannot leave this waiting.
		fd, err = unix.Open(pipe, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENXIO) {
			return fmt.Errorf("lazy-pages ahead: %s: %w", pipe, err)
		}
		if lp.Exited() {
			return fmt.Errorf("criu lazy-pages exited before it read %s; see %s", filepath.Base(pipe), lp.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("criu lazy-pages did not read %s within %s; see %s", filepath.Base(pipe), aheadFeedWait, lp.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		_ = unix.Close(fd)
		return err
	}
	f := os.NewFile(uintptr(fd), pipe)
	defer f.Close()
	if _, err := f.Write(data); err != nil && !errors.Is(err, syscall.EPIPE) {
		// EPIPE: CRIU closed the pipe once it had read what it needed.
		return fmt.Errorf("lazy-pages ahead: writing %s: %w", filepath.Base(pipe), err)
	}
	return nil
}
