package node

import (
	"time"

	"github.com/ferryhq/ferry/node/criu"
)

// Info describes the node.
type Info struct {
	Name        string         `json:"name"`
	DataDir     string         `json:"data_dir"`
	Started     time.Time      `json:"started"`
	Containers  int            `json:"containers"`
	Running     int            `json:"running"`
	MemoryTotal int64          `json:"memory_total"`
	MemoryFree  int64          `json:"memory_available"`
	CRIU        *criu.Features `json:"criu,omitempty"`
	CRIUError   string         `json:"criu_error,omitempty"`
}

// Info returns the node's description, with what the CRIU probe found.
func (a *Agent) Info() Info {
	list := a.List()
	in := Info{Name: a.cfg.Name, DataDir: a.cfg.DataDir, Started: a.started, Containers: len(list), CRIU: a.features}
	for _, c := range list {
		if c.State == StateRunning {
			in.Running++
		}
	}
	if a.probeErr != nil {
		in.CRIUError = a.probeErr.Error()
	}
	in.MemoryTotal, in.MemoryFree = memInfo()
	return in
}
