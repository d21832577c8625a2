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
}
