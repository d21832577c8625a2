package criu

import (
	"errors"
	"strings"
	"testing"
)

func TestLazyLogComplete(t *testing.T) {
	const head = `(00.099429) uffd: Waiting for incoming connections on lazy-pages.socket
(00.728440) uffd: Received PID: 1, uffd: 12
(00.728606) uffd: 1-12: Found 13 pages to be handled by UFFD
(00.728638) uffd: Received PID: 5, uffd: 13
(00.728696) uffd: 5-13: Found 15 pages to be handled by UFFD
(00.730001) uffd: 5-13: #PF at 0x7fbbbd045000
(00.730101) uffd: 5-13: uffd_copy: 0x7fbbbd045000/4096
`
	tests := []struct {
		name string
		log  string
		ok   bool
	}{
		{"every process served to the end", head + `(00.757424) uffd: 1-12: UFFD transferred pages: (13/13)
(00.757614) uffd: 5-13: UFFD transferred pages: (15/15)
`, true},
		{"a process forked and one exited", head + `(00.740000) uffd: 5-13: FORK: child with ufd=14
(00.741000) uffd: 5-14: EXIT
(00.757424) uffd: 1-12: UFFD transferred pages: (13/13)
(00.757500) uffd: 5--14: UFFD transferred pages: (3/15)
(00.757614) uffd: 5-13: UFFD transferred pages: (15/15)
`, true},
		{"killed while it copied", head + `(00.757424) uffd: 1-12: UFFD transferred pages: (13/13)
(00.757500) uffd: 5-13: uffd_copy: 0x7fbbbd049000/8192
`, false},
		{"killed before any process reached it", head[:strings.Index(head, "\n")+1], false},
		{"an error", head + `(00.757424) Error (criu/uffd.c:836): uffd: 5-13: uffd_copy: Bad address
(00.757425) uffd: 1-12: UFFD transferred pages: (13/13)
(00.757614) uffd: 5-13: UFFD transferred pages: (15/15)
`, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := LazyLogComplete(strings.NewReader(tt.log))
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrLazyIncomplete)) {
				t.Fatalf("LazyLogComplete = %v, want complete %v", err, tt.ok)
			}
		})
	}
	if err := LazyLogFileComplete("/nonexistent/lazy-pages.log"); err == nil || errors.Is(err, ErrLazyIncomplete) {
		t.Fatalf("a missing log: %v, want an error of its own", err)
	}
}
