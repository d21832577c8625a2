package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogRecordRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 23, 8, 33, 4, 131147931, time.UTC)
	tests := []LogRecord{
		{Time: now, Stream: Stdout, Text: "49"},
		{Time: now, Stream: Stderr, Text: "an error: with spaces  and  more"},
		{Time: now, Stream: Stdout, Partial: true, Text: "part"},
		{Time: now, Stream: Stdout, Text: ""},
	}
	for _, want := range tests {
		line := FormatLogRecord(want)
		got, err := ParseLogRecord([]byte(strings.TrimSuffix(string(line), "\n")))
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		if !got.Time.Equal(want.Time) || got.Stream != want.Stream || got.Partial != want.Partial || got.Text != want.Text {
			t.Fatalf("round trip of %+v gave %+v", want, got)
		}
	}
}

func TestParseLogRecordRejects(t *testing.T) {
	for _, line := range []string{"", "no", "notatime stdout F x", "2026-11-23T08:33:04Z"} {
		if _, err := ParseLogRecord([]byte(line)); !errors.Is(err, ErrBadLogLine) {
			t.Errorf("ParseLogRecord(%q) = %v, want ErrBadLogLine", line, err)
		}
	}
}

func FuzzParseLogRecord(f *testing.F) {
	f.Add([]byte("2026-11-23T08:33:04.131147931Z stdout F 49"))
	f.Add([]byte("2026-11-23T08:33:04Z stderr P "))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseLogRecord(b)
		if err != nil {
			return
		}
		if _, err := ParseLogRecord([]byte(strings.TrimSuffix(string(FormatLogRecord(r)), "\n"))); err != nil && !strings.Contains(r.Text, "\n") {
			t.Fatalf("a parsed record does not parse again: %v", err)
		}
	})
}

func TestCopyLinesSplitsLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, err := OpenLogWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxLogLine+10)
	if err := w.CopyLines(strings.NewReader("a\n"+long+"\nb"), Stdout); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var got []LogRecord
	if err := FollowLog(context.Background(), path, false, nil, func(r LogRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Text != "a" || !got[1].Partial || got[1].Text+got[2].Text != long || got[3].Text != "b" {
		t.Fatalf("records: %d, %+v", len(got), got[0])
	}
}

func TestFollowLogSeesNewRecordsUntilDone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, err := OpenLogWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pr, pw := io.Pipe()
	go func() { _ = w.CopyLines(pr, Stdout) }()
	finished := make(chan struct{})
	done := func() bool {
		select {
		case <-finished:
			return true
		default:
			return false
		}
	}
	got := make(chan string, 10)
	errc := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		errc <- FollowLog(ctx, path, true, done, func(r LogRecord) error { got <- r.Text; return nil })
	}()
	for _, s := range []string{"one", "two", "three"} {
		io.WriteString(pw, s+"\n")
		if g := <-got; g != s {
			t.Fatalf("followed %q, want %q", g, s)
		}
	}
	pw.Close()
	close(finished)
	if err := <-errc; err != nil {
		t.Fatalf("FollowLog: %v", err)
	}
}

func TestFollowLogWaitsForTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "later")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := FollowLog(ctx, path, true, nil, func(LogRecord) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	if err := FollowLog(context.Background(), path, false, nil, func(LogRecord) error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("without follow a missing log is ErrNotExist, got %v", err)
	}
}
