package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/ferryhq/ferry/migrate"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/images"
	"github.com/ferryhq/ferry/node/runtime"
)

// Client talks to one agent's API.
type Client struct {
	addr string
	hc   *http.Client
}

// NewUnixClient returns a client for the agent listening on the unix socket at path.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{addr: "unix://" + path, hc: &http.Client{Transport: tr}}
}

// NewClient returns a client that reaches the agent through rt (for example an SSH channel transport).
func NewClient(addr string, rt http.RoundTripper) *Client {
	return &Client{addr: addr, hc: &http.Client{Transport: rt}}
}

// Addr is the agent's address, for messages.
func (c *Client) Addr() string { return c.addr }

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ferry"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachable(c.addr, err)
	}
	return resp, nil
}

// call does a request and decodes a JSON answer (or error) into out.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

func decodeResponse(resp *http.Response, out any) error {
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&eb); err != nil {
			return fmt.Errorf("the agent answered %s", resp.Status)
		}
		return decodeError(eb)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// stream does a request answered with events; fn sees each non-final event, result receives the result.
func (c *Client) stream(ctx context.Context, method, path string, body any, fn func(Event) error, result any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeResponse(resp, nil)
	}
	return readEvents(resp.Body, fn, result)
}

func esc(s string) string { return url.PathEscape(s) }

// Info describes the node.
func (c *Client) Info(ctx context.Context) (*node.Info, error) {
	var in node.Info
	return &in, c.call(ctx, "GET", "/v1/node", nil, &in)
}

// Containers lists the containers.
func (c *Client) Containers(ctx context.Context) ([]node.Container, error) {
	var out []node.Container
	return out, c.call(ctx, "GET", "/v1/containers", nil, &out)
}

// Container returns one container.
func (c *Client) Container(ctx context.Context, name string) (*node.Container, error) {
	var out node.Container
	return &out, c.call(ctx, "GET", "/v1/containers/"+esc(name), nil, &out)
}

// Run creates and starts a container.
func (c *Client) Run(ctx context.Context, req node.RunRequest) (*node.Container, error) {
	var out node.Container
	return &out, c.call(ctx, "POST", "/v1/containers", req, &out)
}

// Stop stops a container.
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration) (*node.Container, error) {
	var out node.Container
	return &out, c.call(ctx, "POST", "/v1/containers/"+esc(name)+"/stop", StopRequest{Timeout: timeout}, &out)
}

// Remove removes a container.
func (c *Client) Remove(ctx context.Context, name string, force bool) error {
	q := ""
	if force {
		q = "?force=1"
	}
	return c.call(ctx, "DELETE", "/v1/containers/"+esc(name)+q, nil, nil)
}

// Logs streams a container's log records to fn.
func (c *Client) Logs(ctx context.Context, name string, follow bool, fn func(runtime.LogRecord) error) error {
	q := ""
	if follow {
		q = "?follow=1"
	}
	return c.stream(ctx, "GET", "/v1/containers/"+esc(name)+"/logs"+q, nil, func(ev Event) error {
		var rec runtime.LogRecord
		if err := json.Unmarshal(ev.Data, &rec); err != nil {
			return err
		}
		return fn(rec)
	}, nil)
}

// Exec runs a command in a container, copying its output to stdout and stderr, and returns its exit code.
func (c *Client) Exec(ctx context.Context, name string, args, env []string, stdout, stderr io.Writer) (int, error) {
	var res ExecResult
	err := c.stream(ctx, "POST", "/v1/containers/"+esc(name)+"/exec", ExecRequest{Args: args, Env: env}, func(ev Event) error {
		var s string
		if err := json.Unmarshal(ev.Data, &s); err != nil {
			return err
		}
		w := stdout
		if ev.Type == EventStderr {
			w = stderr
		}
		_, err := io.WriteString(w, s)
		return err
	}, &res)
	if err != nil {
		return -1, err
	}
	return res.ExitCode, nil
}

func progressEvents(fn node.ProgressFunc) func(Event) error {
	return func(ev Event) error {
		if fn == nil || ev.Type != EventProgress {
			return nil
		}
		var p node.Progress
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			return err
		}
		fn(p)
		return nil
	}
}

// Checkpoint checkpoints a container.
func (c *Client) Checkpoint(ctx context.Context, name string, opts node.CheckpointOptions, progress node.ProgressFunc) (*node.CheckpointReport, error) {
	var rep node.CheckpointReport
	return &rep, c.stream(ctx, "POST", "/v1/containers/"+esc(name)+"/checkpoint", opts, progressEvents(progress), &rep)
}

// Restore restores a container from a checkpoint.
func (c *Client) Restore(ctx context.Context, name string, opts node.RestoreOptions, progress node.ProgressFunc) (*node.RestoreReport, error) {
	var rep node.RestoreReport
	return &rep, c.stream(ctx, "POST", "/v1/containers/"+esc(name)+"/restore", opts, progressEvents(progress), &rep)
}

// ImportImage imports the image at path (a path on the agent's host).
func (c *Client) ImportImage(ctx context.Context, name, path string, progress node.ProgressFunc) (*images.Image, error) {
	var img images.Image
	return &img, c.stream(ctx, "POST", "/v1/images", ImportRequest{Name: name, Path: path}, progressEvents(progress), &img)
}

// Images lists the images.
func (c *Client) Images(ctx context.Context) ([]*images.Image, error) {
	var out []*images.Image
	return out, c.call(ctx, "GET", "/v1/images", nil, &out)
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]NodeView, error) {
	var out []NodeView
	return out, c.call(ctx, "GET", "/v1/nodes", nil, &out)
}

// NodeInfo describes one node (empty name: the node of the agent answering).
func (c *Client) NodeInfo(ctx context.Context, name string) (*node.Info, error) {
	var in node.Info
	q := ""
	if name != "" {
		q = "?node=" + url.QueryEscape(name)
	}
	return &in, c.call(ctx, "GET", "/v1/node"+q, nil, &in)
}

// ClusterContainers lists the containers of the whole cluster with their nodes.
func (c *Client) ClusterContainers(ctx context.Context) ([]ContainerView, error) {
	var out []ContainerView
	return out, c.call(ctx, "GET", "/v1/containers", nil, &out)
}

// RunPlaced creates a container where the cluster places it (or on req.Node).
func (c *Client) RunPlaced(ctx context.Context, req RunRequest) (*ContainerView, error) {
	var out ContainerView
	return &out, c.call(ctx, "POST", "/v1/containers", req, &out)
}

// ClusterImages lists the cluster's images and where they are.
func (c *Client) ClusterImages(ctx context.Context) ([]ImageView, error) {
	var out []ImageView
	return out, c.call(ctx, "GET", "/v1/images", nil, &out)
}

// JoinToken returns a token with which another agent can join the cluster.
func (c *Client) JoinToken(ctx context.Context) (string, error) {
	var out TokenResponse
	return out.Token, c.call(ctx, "GET", "/v1/cluster/token", nil, &out)
}

// Migrate asks the cluster to move a container and returns the report (also for a migration that rolled
// back; its Outcome says so).
func (c *Client) Migrate(ctx context.Context, req MigrateRequest, progress node.ProgressFunc) (*migrate.Report, error) {
	var rep migrate.Report
	return &rep, c.stream(ctx, "POST", "/v1/migrations", req, progressEvents(progress), &rep)
}
