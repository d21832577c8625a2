package migrate

import (
	"testing"
	"time"
)

func TestPhasesOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	full := &DumpResult{FrozenAt: t0, DumpTook: 500 * ms, SentAt: t0.Add(600 * ms)}
	res := &RestoreResult{StartedAt: t0.Add(650 * ms), RunningAt: t0.Add(900 * ms)}
	for _, tc := range []struct {
		name string
		d    *DumpResult
		r    *RestoreResult
		want *Phases
	}{
		{"all times", full, res, &Phases{Dump: 500 * ms, Send: 100 * ms, Handover: 50 * ms, Restore: 250 * ms}},
		{"no send time", &DumpResult{FrozenAt: t0, DumpTook: 500 * ms}, res, nil},
		{"no restore start", full, &RestoreResult{RunningAt: t0.Add(time.Second)}, nil},
		{"no dump", nil, res, nil},
	} {
		got := phasesOf(tc.d, tc.r)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		if got != nil && got.Dump+got.Send+got.Handover+got.Restore != tc.r.RunningAt.Sub(tc.d.FrozenAt) {
			t.Errorf("%s: phases do not add up to the downtime", tc.name)
		}
	}
}
