package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node/api"
)

// followLogs serves `ferry logs -f`: it follows the container's log on its node and, when the container
// moves (a migration), goes on from the new node where it left off (the log moved with the container).
func (rt *Router) followLogs(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	var ew *api.EventWriter
	seen := 0
	for {
		c, ok := rt.lookupContainer(name)
		if !ok {
			break // removed: the log ends
		}
		body, err := rt.openStream(ctx, c.Node, fmt.Sprintf("/v1/containers/%s/logs?follow=1&skip=%d", name, seen))
		if err != nil {
			if ew == nil {
				api.WriteError(w, err)
			} else {
				ew.Fail(err)
			}
			return
		}
		if ew == nil {
			ew = api.NewEventWriter(w)
		}
		n, errBody, err := forwardLogEvents(body, ew)
		body.Close()
		seen += n
		if ctx.Err() != nil {
			return
		}
		if rt.movedFrom(ctx, name, c.Node) {
			continue // it moved: follow it to its new node
		}
		if err != nil || errBody != nil {
			if errBody != nil {
				err = api.DecodeError(*errBody)
			}
			ew.Fail(err)
			return
		}
		break
	}
	if ew == nil {
		ew = api.NewEventWriter(w)
	}
	_ = ew.Send(api.EventResult, nil)
}

// movedFrom tells whether the container left node from, once the log stream there has ended. The end
// on the source comes when the source removes its copy, after the placement flipped in raft, but this
// agent may not have applied that flip yet: it first catches up with the leader, then waits while a
// migration of the container away from that node is still under way (it ends moved or rolled back).
func (rt *Router) movedFrom(ctx context.Context, name, from string) bool {
	rt.catchUp(ctx)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c, ok := rt.lookupContainer(name)
		if !ok {
			return false
		}
		if c.Node != from {
			return true
		}
		if !rt.migrationUnderWay(name, from) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// migrationUnderWay tells whether a migration of the container away from node from is not final yet.
func (rt *Router) migrationUnderWay(name, from string) bool {
	under := false
	rt.store.View(func(s *cluster.State) {
		for _, m := range s.UnfinishedMigrations() {
			under = under || (m.Container == name && m.Source == from)
		}
	})
	return under
}

// forwardLogEvents copies log events to ew until the stream's end, and returns how many it copied and the
// stream's error event, if it ended with one.
func forwardLogEvents(body io.Reader, ew *api.EventWriter) (int, *api.ErrorBody, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	n := 0
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return n, nil, nil // the node went away: the caller looks where the container is now
		}
		var ev api.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return n, nil, fmt.Errorf("bad log event: %w", err)
		}
		switch ev.Type {
		case api.EventLog:
			if err := ew.Send(api.EventLog, ev.Data); err != nil {
				return n, nil, err
			}
			n++
		case api.EventError:
			return n, ev.Error, nil
		case api.EventResult:
			return n, nil, nil
		}
	}
}

// openStream starts a node-local GET on a node and returns the answer's body.
func (rt *Router) openStream(ctx context.Context, nodeName, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://local"+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.HeaderLocal, "1")
	if nodeName == rt.self {
		pr, pw := io.Pipe()
		go func() {
			rt.local.ServeHTTP(&pipeWriter{pw: pw, header: http.Header{}}, req)
			pw.Close()
		}()
		return pr, nil
	}
	addr, err := rt.nodeAddr(nodeName)
	if err != nil {
		return nil, err
	}
	req.URL.Host, req.Host = addr, addr
	resp, err := (&http.Client{Transport: rt.peers.Transport()}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: node %s (%s): %v", api.ErrNodeUnreachable, nodeName, addr, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var eb api.ErrorBody
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb) != nil {
			return nil, fmt.Errorf("node %s answered %s", nodeName, resp.Status)
		}
		return nil, api.DecodeError(eb)
	}
	return resp.Body, nil
}

// pipeWriter is an http.ResponseWriter that writes the body into a pipe.
type pipeWriter struct {
	pw     *io.PipeWriter
	header http.Header
}

func (p *pipeWriter) Header() http.Header         { return p.header }
func (p *pipeWriter) WriteHeader(int)             {}
func (p *pipeWriter) Write(b []byte) (int, error) { return p.pw.Write(b) }
func (p *pipeWriter) Flush()                      {}
