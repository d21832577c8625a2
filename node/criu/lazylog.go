package criu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrLazyIncomplete says that a lazy-pages daemon's log shows it ended before every page was in.
var ErrLazyIncomplete = errors.New("the lazy-pages daemon ended before every page was in")

// LazyLogComplete reads the log of a `criu lazy-pages` daemon (written at -v4, as LaunchLazyPages starts
// it) and says whether the daemon served every process to the end: it is nil when it did, ErrLazyIncomplete
// when it did not (or an error of reading the log). It is how an agent that did not start a daemon, and so
// cannot read its exit status (an agent restarted while the daemon copied), tells how it ended.
//
// The daemon follows each restored process (and each process it forks) from the moment the restore hands
// over its userfaultfd ("Received PID" at debug level; "FORK: child with ufd") and writes one summary line
// ("UFFD transferred pages") when it has nothing left to copy into it, or once it exited; it ends, with
// success, when every one has its summary. An error ends it at once ("Error (file:line)"); a killed daemon
// leaves fewer summaries than processes.
func LazyLogComplete(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	followed, summed := 0, 0
	var failure string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "Error ("):
			if failure == "" {
				failure = strings.TrimSpace(line)
			}
		case strings.Contains(line, "UFFD transferred pages"):
			summed++
		case strings.Contains(line, "uffd: Received PID:"), strings.Contains(line, "FORK: child with ufd="):
			followed++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the lazy-pages log: %w", err)
	}
	switch {
	case failure != "":
		return fmt.Errorf("%w: %s", ErrLazyIncomplete, failure)
	case followed == 0:
		return fmt.Errorf("%w: no restored process reached it", ErrLazyIncomplete)
	case summed < followed:
		return fmt.Errorf("%w: %d of the %d processes it served had all their pages", ErrLazyIncomplete, summed, followed)
	}
	return nil
}

// LazyLogFileComplete is LazyLogComplete of the log at path.
func LazyLogFileComplete(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return LazyLogComplete(f)
}

// Log is the path of the daemon's log.
func (lp *LazyPages) Log() string { return lp.log }
