package node

import (
	"context"
	"sync"

	"github.com/ferryhq/ferry/node/criu"
)

// postCopyCache keeps the post-copy probe's verdict for the agent's lifetime: the probe costs about a second
// of CRIU work and the answer depends only on the kernel and CRIU, which do not change under a running agent.
type postCopyCache struct {
	mu     sync.Mutex
	result *criu.PostCopyProbe
}

// ProbePostCopy says whether CRIU's post-copy path (lazy pages served from a frozen source) works on this
// node, trying it once on a throw-away process, never on a container (see criu.ProbePostCopy). Later calls
// return the first verdict.
func (a *Agent) ProbePostCopy(ctx context.Context) (*criu.PostCopyProbe, error) {
	a.postCopy.mu.Lock()
	defer a.postCopy.mu.Unlock()
	if a.postCopy.result != nil {
		return a.postCopy.result, nil
	}
	// The plain CRIU (runc's), not the launcher: the probe's process lives in the host's mount namespace, as
	// the dumping CRIU must (see criu.KdatEnv).
	res, err := criu.ProbePostCopy(ctx, a.runc.Criu, a.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.log.Info("post-copy probe", "works", res.Works, "reason", res.Reason, "took", res.Took)
	a.postCopy.result = res
	return res, nil
}
