package migrate

import (
	"strings"
	"testing"
)

func TestPreCopyPolicy(t *testing.T) {
	p := DefaultPreCopyPolicy()
	full := RoundStats{PagesScanned: 65536, PagesWritten: 65536}
	tests := []struct {
		name   string
		rounds []RoundStats
		again  bool
		reason string
	}{
		{"nothing yet", nil, true, "first round"},
		{"after the first round, always a second (phaul stops here)", []RoundStats{full}, true, "second round"},
		{"memory settled: goal reached", []RoundStats{full, {65536, 8000, 57536}}, false, "did not change"},
		{"shrinking but below the goal", []RoundStats{full, {65536, 40000, 25536}, {65536, 25000, 40536}}, true, "another round"},
		{"dirty set stopped shrinking", []RoundStats{full, {65536, 40000, 25536}, {65536, 39000, 26536}}, false, "stopped shrinking"},
		{"dirtied as fast as copied", []RoundStats{full, {65536, 60000, 5536}, {65536, 61000, 4536}}, false, "stopped shrinking"},
		{"bound on rounds", []RoundStats{full, {65536, 50000, 15536}, {65536, 40000, 25536}, {65536, 32000, 33536}, {65536, 25000, 40536}}, false, "most allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			again, reason := p.Next(tt.rounds)
			if again != tt.again || !strings.Contains(reason, tt.reason) {
				t.Fatalf("Next = %v %q, want %v saying %q", again, reason, tt.again, tt.reason)
			}
		})
	}
}

func TestPreCopyPolicyValidate(t *testing.T) {
	bad := []PreCopyPolicy{{MaxRounds: 0, Goal: 0.7}, {MaxRounds: 3, Goal: 0}, {MaxRounds: 3, Goal: 1.5}, {MaxRounds: 3, Goal: 0.7, MinShrink: 1}}
	for _, p := range bad {
		if p.Validate() == nil {
			t.Errorf("%+v validated", p)
		}
	}
	if err := DefaultPreCopyPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
}
