package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/transfer/stream"
)

// SendRequest asks an agent to stream a local directory to another node, which checks it and throws it away:
// a measurement of the transfer path (benchmarks, diagnostics). Root on the local socket only.
type SendRequest struct {
	Dir  string `json:"dir"`
	Node string `json:"node"`
}

// SendResult is what such a send measured.
type SendResult struct {
	Stats    stream.Stats  `json:"stats"`
	Duration time.Duration `json:"duration"`
	MBps     float64       `json:"mb_per_s"` // raw megabytes (1e6) per second
}

func (a *Agent) sendCmd(w http.ResponseWriter, r *http.Request) {
	if callerOf(r).Role != "root" {
		api.WriteError(w, fmt.Errorf("%w: sending a directory is for root on the node's own socket", api.ErrForbidden))
		return
	}
	var req SendRequest
	if err := decode(r, &req); err != nil {
		answer(w, nil, err)
		return
	}
	if !filepath.IsAbs(req.Dir) {
		answer(w, nil, fmt.Errorf("%w: dir %q must be absolute", node.ErrInvalid, req.Dir))
		return
	}
	if fi, err := os.Stat(req.Dir); err != nil || !fi.IsDir() {
		answer(w, nil, fmt.Errorf("%w: %s is not a directory", node.ErrInvalid, req.Dir))
		return
	}
	addr, err := a.router.nodeAddr(req.Node)
	if err != nil {
		answer(w, nil, err)
		return
	}
	start := time.Now()
	st, err := a.sendDir(context.WithoutCancel(r.Context()), addr, streamHeader{Kind: streamDiscard}, req.Dir, 0, nil)
	d := time.Since(start)
	answer(w, SendResult{Stats: st, Duration: d, MBps: float64(st.RawBytes) / 1e6 / d.Seconds()}, err)
}
