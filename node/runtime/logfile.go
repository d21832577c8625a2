package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Container logs are written one line per record in the CRI log format that Kubernetes uses:
//
//	2026-11-23T08:33:04.131147931Z stdout F the line's text
//
// F marks a full line, P a part of a line longer than the copy buffer (the rest follows in more records).

// Log streams.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

const maxLogLine = 16 << 10

// LogRecord is one parsed record of a container log.
type LogRecord struct {
	Time    time.Time `json:"time"`
	Stream  string    `json:"stream"`
	Partial bool      `json:"partial,omitempty"`
	Text    string    `json:"text"`
}

// FormatLogRecord renders r as a log file line, newline included.
func FormatLogRecord(r LogRecord) []byte {
	tag := "F"
	if r.Partial {
		tag = "P"
	}
	b := make([]byte, 0, len(r.Text)+48)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, r.Stream...)
	b = append(b, ' ')
	b = append(b, tag...)
	b = append(b, ' ')
	b = append(b, r.Text...)
	return append(b, '\n')
}

// ErrBadLogLine is returned by ParseLogRecord for a line that is not a log record.
var ErrBadLogLine = errors.New("malformed log line")

// ParseLogRecord parses one line (without its newline).
func ParseLogRecord(line []byte) (LogRecord, error) {
	parts := bytes.SplitN(line, []byte{' '}, 4)
	if len(parts) < 3 {
		return LogRecord{}, fmt.Errorf("%w: %q", ErrBadLogLine, truncate(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(parts[0]))
	if err != nil {
		return LogRecord{}, fmt.Errorf("%w: bad time in %q", ErrBadLogLine, truncate(line))
	}
	r := LogRecord{Time: t, Stream: string(parts[1]), Partial: string(parts[2]) == "P"}
	if len(parts) == 4 {
		r.Text = string(parts[3])
	}
	return r, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// LogWriter appends records to a container's log file. Safe for concurrent use by the stream copiers.
type LogWriter struct {
	mu sync.Mutex
	f  *os.File
}

// OpenLogWriter opens (creating) path for appending.
func OpenLogWriter(path string) (*LogWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &LogWriter{f: f}, nil
}

// Write appends one record.
func (w *LogWriter) Write(r LogRecord) error {
	b := FormatLogRecord(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.f.Write(b)
	return err
}

// Close closes the file.
func (w *LogWriter) Close() error { return w.f.Close() }

// CopyLines reads src line by line until EOF and writes each line as a record of stream.
func (w *LogWriter) CopyLines(src io.Reader, stream string) error {
	br := bufio.NewReaderSize(src, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			partial := line[len(line)-1] != '\n'
			text := bytes.TrimSuffix(line, []byte{'\n'})
			if werr := w.Write(LogRecord{Time: time.Now(), Stream: stream, Partial: partial && err == bufio.ErrBufferFull, Text: string(text)}); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
	}
}

// FollowLog sends the records of the log at path to fn, from the start. With follow, it keeps reading new
// records as they are written until ctx ends or done() returns true once everything written was read.
func FollowLog(ctx context.Context, path string, follow bool, done func() bool, fn func(LogRecord) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && follow {
		f, err = waitForFile(ctx, path, done)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, maxLogLine+64)
	var pending []byte
	for {
		chunk, err := br.ReadSlice('\n')
		pending = append(pending, chunk...)
		if err == nil {
			rec, perr := ParseLogRecord(bytes.TrimSuffix(pending, []byte{'\n'}))
			pending = pending[:0]
			if perr == nil {
				if ferr := fn(rec); ferr != nil {
					return ferr
				}
			}
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if !follow || (done != nil && done()) {
			// One more read: records may have landed between the EOF and the done check.
			if !follow || !moreToRead(f) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func moreToRead(f *os.File) bool {
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Size() > pos
}

func waitForFile(ctx context.Context, path string, done func() bool) (*os.File, error) {
	for {
		f, err := os.Open(path)
		if !errors.Is(err, os.ErrNotExist) || (done != nil && done()) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
