package migrate

import "time"

// Report is the end of a migration, for a person and as JSON.
type Report struct {
	Job        Job            `json:"job"`
	Outcome    string         `json:"outcome"` // committed or rolled-back
	Error      string         `json:"error,omitempty"`
	Downtime   time.Duration  `json:"downtime"` // frozen on the source until running on the target
	Total      time.Duration  `json:"total"`
	BytesRaw   int64          `json:"bytes_raw"`  // pages plus the rest, uncompressed
	BytesSent  int64          `json:"bytes_sent"` // on the wire (the SSH channels' payload)
	Dump       *DumpResult    `json:"dump,omitempty"`
	Restore    *RestoreResult `json:"restore,omitempty"`
	FailedStep string         `json:"failed_step,omitempty"`
	// Downtime, step by step (when the nodes reported the times).
	Phases *Phases `json:"phases,omitempty"`
}

// Phases splits a migration's downtime: frozen and dumped (the pages going to the target as CRIU dumps
// them), the rest of the dump sent, handed over (the leader asks the target to restore), restored.
type Phases struct {
	Dump     time.Duration `json:"dump"`
	Send     time.Duration `json:"send"`
	Handover time.Duration `json:"handover"`
	Restore  time.Duration `json:"restore"`
}

// phasesOf computes the phases from the nodes' times; nil when a time is missing.
func phasesOf(d *DumpResult, r *RestoreResult) *Phases {
	if d == nil || r == nil || d.SentAt.IsZero() || r.StartedAt.IsZero() {
		return nil
	}
	dumped := d.FrozenAt.Add(d.DumpTook)
	return &Phases{Dump: d.DumpTook, Send: d.SentAt.Sub(dumped), Handover: r.StartedAt.Sub(d.SentAt), Restore: r.RunningAt.Sub(r.StartedAt)}
}
