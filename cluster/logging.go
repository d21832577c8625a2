package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// levelWriter turns the text lines raft (hclog) and memberlist (log.Logger)
// print into slog records, reading the level from the "[LEVEL]" tag.
type levelWriter struct {
	logger *slog.Logger
	min    slog.Level // lines below this are dropped early
}

func (w *levelWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		w.line(string(line))
	}
	return len(p), nil
}

func (w *levelWriter) line(s string) {
	level := slog.LevelInfo
	if i := strings.Index(s, "["); i >= 0 {
		if j := strings.Index(s[i:], "]"); j > 0 {
			switch s[i+1 : i+j] {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			s = strings.TrimSpace(s[i+j+1:])
		}
	}
	if level < w.min {
		return
	}
	w.logger.Log(context.Background(), level, s)
}

func (w *levelWriter) minLevel() slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if w.logger.Enabled(context.Background(), l) {
			return l
		}
	}
	return slog.LevelError
}

func newLevelWriter(l *slog.Logger) *levelWriter {
	w := &levelWriter{logger: l}
	w.min = w.minLevel()
	return w
}

// hclogFor adapts l for raft.
func hclogFor(l *slog.Logger, name string) hclog.Logger {
	w := newLevelWriter(l)
	level := hclog.Info
	switch {
	case w.min <= slog.LevelDebug:
		level = hclog.Debug
	case w.min >= slog.LevelError:
		level = hclog.Error
	case w.min >= slog.LevelWarn:
		level = hclog.Warn
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        name,
		Level:       level,
		Output:      w,
		DisableTime: true,
	})
}

// stdlogFor adapts l for memberlist.
func stdlogFor(l *slog.Logger) *log.Logger {
	return log.New(newLevelWriter(l), "", 0)
}
