package migrate

import "fmt"

// RoundStats is what CRIU reports for one pre-dump round (its stats-dump: pages scanned, written, and
// skipped because the parent round already has them unchanged).
type RoundStats struct {
	PagesScanned uint64 `json:"pages_scanned"`
	PagesWritten uint64 `json:"pages_written"`
	PagesSkipped uint64 `json:"pages_skipped_parent"`
}

// PreCopyPolicy decides when pre-copy rounds stop and the final dump (with the container frozen) comes.
// Rounds go on while the memory written in a round keeps shrinking; they stop when the share of pages that
// did not change since the previous round reaches Goal (as LXD's incremental memory goal does), when a round
// wrote no less than MinShrink less than the one before (the workload dirties memory as fast as it is copied:
// more rounds would not shorten the final dump), or after MaxRounds.
//
// The first round has no parent and writes everything; the decision to go on after it compares it with
// nothing, so it only checks MaxRounds. (go-criu's phaul client compares the first round with an empty
// record and so always stops after it; this is the difference.)
type PreCopyPolicy struct {
	MaxRounds int     // default 5
	Goal      float64 // fraction of scanned pages skipped that is enough; default 0.7
	MinShrink float64 // a round must write at least this fraction less than the one before; default 0.1
}

// DefaultPreCopyPolicy returns the defaults.
func DefaultPreCopyPolicy() PreCopyPolicy {
	return PreCopyPolicy{MaxRounds: 5, Goal: 0.7, MinShrink: 0.1}
}

// Validate checks the fields.
func (p PreCopyPolicy) Validate() error {
	switch {
	case p.MaxRounds < 1:
		return fmt.Errorf("pre-copy MaxRounds %d: at least 1", p.MaxRounds)
	case p.Goal <= 0 || p.Goal > 1:
		return fmt.Errorf("pre-copy Goal %v: between 0 and 1", p.Goal)
	case p.MinShrink < 0 || p.MinShrink >= 1:
		return fmt.Errorf("pre-copy MinShrink %v: from 0 up to 1", p.MinShrink)
	}
	return nil
}

// Next says, after the rounds so far, whether to run another pre-dump round, and why (or why not).
func (p PreCopyPolicy) Next(rounds []RoundStats) (bool, string) {
	n := len(rounds)
	if n == 0 {
		return true, "first round: copy all memory while the container runs"
	}
	if n >= p.MaxRounds {
		return false, fmt.Sprintf("%d rounds done (the most allowed)", n)
	}
	last := rounds[n-1]
	if n == 1 {
		return true, "second round: see how much the workload changes"
	}
	if last.PagesScanned > 0 {
		skipped := float64(last.PagesSkipped) / float64(last.PagesScanned)
		if skipped >= p.Goal {
			return false, fmt.Sprintf("%.0f%% of the memory did not change in round %d (goal %.0f%%)", 100*skipped, n, 100*p.Goal)
		}
	}
	prev := rounds[n-2]
	if float64(last.PagesWritten) > float64(prev.PagesWritten)*(1-p.MinShrink) {
		return false, fmt.Sprintf("round %d wrote %d pages, round %d %d: the dirty set stopped shrinking", n, last.PagesWritten, n-1, prev.PagesWritten)
	}
	return true, fmt.Sprintf("round %d wrote %d pages, less than round %d (%d): another round", n, last.PagesWritten, n-1, prev.PagesWritten)
}
