package agent

import (
	"runtime"
	"testing"
)

func TestStreamLanes(t *testing.T) {
	cores := runtime.GOMAXPROCS(0)
	for _, tc := range []struct {
		name  string
		lanes int
		size  int64
		want  int
	}{
		{"small directory", 4, parallelMin - 1, 1},
		{"no more lanes than cores", cores + 3, parallelMin, cores},
		{"fewer lanes than cores", 1, 1 << 30, 1},
		{"zero lanes still one", 0, 1 << 30, 1},
	} {
		if got := streamLanes(tc.lanes, tc.size); got != tc.want {
			t.Errorf("%s: streamLanes(%d, %d) = %d, want %d", tc.name, tc.lanes, tc.size, got, tc.want)
		}
	}
}
