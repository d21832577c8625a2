package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/images"
	"github.com/ferryhq/ferry/node/runtime"
)

// fakeBackend is an in-memory Backend for testing the API without runc.
type fakeBackend struct {
	mu         sync.Mutex
	containers map[string]node.Container
}

func newFake() *fakeBackend { return &fakeBackend{containers: map[string]node.Container{}} }

func (f *fakeBackend) Info() node.Info { return node.Info{Name: "fake"} }
func (f *fakeBackend) List() []node.Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []node.Container
	for _, c := range f.containers {
		out = append(out, c)
	}
	return out
}
func (f *fakeBackend) Get(name string) (node.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[name]
	if !ok {
		return c, fmt.Errorf("%w: no container named %q", node.ErrNotFound, name)
	}
	return c, nil
}
func (f *fakeBackend) Run(_ context.Context, req node.RunRequest) (node.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[req.Name]; ok {
		return node.Container{}, fmt.Errorf("%w: %s", node.ErrExists, req.Name)
	}
	c := node.Container{Config: node.ContainerConfig{Name: req.Name, Image: req.Image, Args: req.Args}, State: node.StateRunning}
	f.containers[req.Name] = c
	return c, nil
}
func (f *fakeBackend) Stop(_ context.Context, name string, _ time.Duration) (node.Container, error) {
	c, err := f.Get(name)
	c.State = node.StateStopped
	return c, err
}
func (f *fakeBackend) Remove(_ context.Context, name string, _ bool) error {
	_, err := f.Get(name)
	return err
}
func (f *fakeBackend) Exec(_ context.Context, name string, args, _ []string, stdout, stderr io.Writer) (int, error) {
	if _, err := f.Get(name); err != nil {
		return -1, err
	}
	io.WriteString(stdout, strings.Join(args, " ")+"\n")
	io.WriteString(stderr, "warning\n")
	return 3, nil
}
func (f *fakeBackend) Logs(_ context.Context, name string, _ bool, fn func(runtime.LogRecord) error) error {
	for i := range 3 {
		if err := fn(runtime.LogRecord{Stream: runtime.Stdout, Text: fmt.Sprint(i)}); err != nil {
			return err
		}
	}
	return nil
}
func (f *fakeBackend) Checkpoint(_ context.Context, name string, opts node.CheckpointOptions, p node.ProgressFunc) (*node.CheckpointReport, error) {
	if _, err := f.Get(name); err != nil {
		return nil, err
	}
	p(node.Progress{Phase: "dumping"})
	p(node.Progress{Phase: "manifest"})
	return &node.CheckpointReport{Container: name, ID: "ck1", LeaveRunning: opts.LeaveRunning}, nil
}
func (f *fakeBackend) Restore(_ context.Context, name string, _ node.RestoreOptions, _ node.ProgressFunc) (*node.RestoreReport, error) {
	return nil, fmt.Errorf("%w: refusing to restore %s: images/pages-1.img has sha256 …", node.ErrRejected, name)
}
func (f *fakeBackend) ImportImage(context.Context, string, string, node.ProgressFunc) (*images.Image, error) {
	return nil, fmt.Errorf("%w: bad name", node.ErrInvalid)
}
func (f *fakeBackend) ListImages() ([]*images.Image, error) { return nil, nil }

func serve(t *testing.T, b Backend) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = NewServer(b, nil).Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return NewUnixClient(sock)
}

func TestClientServer(t *testing.T) {
	c := serve(t, newFake())
	ctx := context.Background()
	if _, err := c.Run(ctx, node.RunRequest{Name: "np", Image: "busybox", Args: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"exists", func() error { _, err := c.Run(ctx, node.RunRequest{Name: "np"}); return err }, node.ErrExists},
		{"not found", func() error { _, err := c.Container(ctx, "nope"); return err }, node.ErrNotFound},
		{"not found in a stream", func() error { _, err := c.Checkpoint(ctx, "nope", node.CheckpointOptions{}, nil); return err }, node.ErrNotFound},
		{"rejected", func() error { _, err := c.Restore(ctx, "np", node.RestoreOptions{}, nil); return err }, node.ErrRejected},
		{"invalid", func() error { _, err := c.ImportImage(ctx, "x", "/x", nil); return err }, node.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStreams(t *testing.T) {
	c := serve(t, newFake())
	ctx := context.Background()
	c.Run(ctx, node.RunRequest{Name: "np"})
	var phases []string
	rep, err := c.Checkpoint(ctx, "np", node.CheckpointOptions{LeaveRunning: true}, func(p node.Progress) { phases = append(phases, p.Phase) })
	if err != nil || rep.ID != "ck1" || !rep.LeaveRunning || strings.Join(phases, ",") != "dumping,manifest" {
		t.Fatalf("checkpoint: %+v %v phases %v", rep, err, phases)
	}
	var out, errOut strings.Builder
	code, err := c.Exec(ctx, "np", []string{"echo", "hi"}, nil, &out, &errOut)
	if err != nil || code != 3 || out.String() != "echo hi\n" || errOut.String() != "warning\n" {
		t.Fatalf("exec: code %d err %v out %q err %q", code, err, out.String(), errOut.String())
	}
	var lines []string
	if err := c.Logs(ctx, "np", false, func(r runtime.LogRecord) error { lines = append(lines, r.Text); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, ",") != "0,1,2" {
		t.Fatalf("logs: %v", lines)
	}
	if err := c.Logs(ctx, "nope", false, func(runtime.LogRecord) error { return nil }); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("logs of an unknown container: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	c := NewUnixClient(filepath.Join(t.TempDir(), "none.sock"))
	if _, err := c.Info(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v", err)
	}
}

func TestRejectsUnknownFields(t *testing.T) {
	c := serve(t, newFake())
	err := c.call(context.Background(), "POST", "/v1/containers", map[string]any{"name": "x", "bogus": 1}, nil)
	if !errors.Is(err, node.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}
