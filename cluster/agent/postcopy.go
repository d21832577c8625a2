package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/node/criu"
)

// probePostCopy is the internal route on which an agent runs (or recalls) its post-copy probe.
func (a *Agent) probePostCopy(w http.ResponseWriter, r *http.Request) {
	res, err := a.node.ProbePostCopy(r.Context())
	if err != nil {
		api.WriteError(w, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, res)
}

// checkPostCopy asks both nodes whether CRIU's post-copy path works on them, before any container is touched.
// It returns an error wrapping migrate.ErrMode that names the node and CRIU's reason when it does not, and
// also when it does: this version moves containers by stop-copy only, and says so rather than pretending.
func (a *Agent) checkPostCopy(src, dst string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for _, n := range []string{src, dst} {
		var res criu.PostCopyProbe
		if err := a.callAgent(ctx, n, http.MethodPost, "/v1/internal/probe/post-copy", nil, &res); err != nil {
			return fmt.Errorf("%w: asking %s whether post-copy works: %v", node.ErrState, n, err)
		}
		if !res.Works {
			return fmt.Errorf("%w: %w: post-copy does not work on %s: its probe (a throw-away process migrated with CRIU lazy pages) failed: %s; nothing was touched; use --mode stop-copy",
				node.ErrInvalid, migrate.ErrMode, n, res.Reason)
		}
	}
	return fmt.Errorf("%w: %w: post-copy passed its probe on %s and %s, but this version moves containers by stop-copy only; use --mode stop-copy",
		node.ErrInvalid, migrate.ErrMode, src, dst)
}
