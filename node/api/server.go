package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/images"
	"github.com/ferryhq/ferry/node/runtime"
)

// Backend is what the API serves: the node agent (node.Agent implements it). Methods are called concurrently
// from request goroutines; progress and output callbacks may be called from other goroutines than the caller's.
type Backend interface {
	Info() node.Info
	List() []node.Container
	Get(name string) (node.Container, error)
	Run(ctx context.Context, req node.RunRequest) (node.Container, error)
	Stop(ctx context.Context, name string, timeout time.Duration) (node.Container, error)
	Remove(ctx context.Context, name string, force bool) error
	Exec(ctx context.Context, name string, args, env []string, stdout, stderr io.Writer) (int, error)
	Logs(ctx context.Context, name string, follow bool, fn func(runtime.LogRecord) error) error
	Checkpoint(ctx context.Context, name string, opts node.CheckpointOptions, progress node.ProgressFunc) (*node.CheckpointReport, error)
	Restore(ctx context.Context, name string, opts node.RestoreOptions, progress node.ProgressFunc) (*node.RestoreReport, error)
	ImportImage(ctx context.Context, name, path string, progress node.ProgressFunc) (*images.Image, error)
	ListImages() ([]*images.Image, error)
}

// maxBody bounds a request body.
const maxBody = 1 << 20

// Server serves the API for one Backend.
type Server struct {
	b   Backend
	log *slog.Logger
	mux *http.ServeMux
}

// NewServer returns a Server for b. A nil logger means slog.Default().
func NewServer(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{b: b, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /v1/node", s.info)
	s.mux.HandleFunc("GET /v1/containers", s.list)
	s.mux.HandleFunc("POST /v1/containers", s.run)
	s.mux.HandleFunc("GET /v1/containers/{name}", s.get)
	s.mux.HandleFunc("DELETE /v1/containers/{name}", s.remove)
	s.mux.HandleFunc("POST /v1/containers/{name}/stop", s.stop)
	s.mux.HandleFunc("GET /v1/containers/{name}/logs", s.logs)
	s.mux.HandleFunc("POST /v1/containers/{name}/exec", s.exec)
	s.mux.HandleFunc("POST /v1/containers/{name}/checkpoint", s.checkpoint)
	s.mux.HandleFunc("POST /v1/containers/{name}/restore", s.restore)
	s.mux.HandleFunc("GET /v1/images", s.listImages)
	s.mux.HandleFunc("POST /v1/images", s.importImage)
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve serves on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	body, status := encodeError(err)
	writeJSON(w, status, body)
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", node.ErrInvalid, err)
	}
	return nil
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.Info()) }
func (s *Server) list(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.b.List()) }

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	c, err := s.b.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, c)
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	var req node.RunRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	c, err := s.b.Run(r.Context(), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// StopRequest is the body of a stop call.
type StopRequest struct {
	Timeout time.Duration `json:"timeout,omitempty"`
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	var req StopRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	c, err := s.b.Stop(r.Context(), r.PathValue("name"), req.Timeout)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, c)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Remove(r.Context(), r.PathValue("name"), r.URL.Query().Get("force") == "1"); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, map[string]string{"removed": r.PathValue("name")})
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.b.Get(name); err != nil {
		writeErr(w, err)
		return
	}
	skip, _ := strconv.Atoi(r.URL.Query().Get("skip")) // records already seen (a follower that moved with the container)
	ew := newEventWriter(w)
	err := s.b.Logs(r.Context(), name, r.URL.Query().Get("follow") == "1", func(rec runtime.LogRecord) error {
		if skip > 0 {
			skip--
			return nil
		}
		return ew.send(EventLog, rec)
	})
	if err != nil && r.Context().Err() == nil {
		ew.fail(err)
		return
	}
	_ = ew.send(EventResult, nil)
}

// ExecRequest is the body of an exec call.
type ExecRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
}

// ExecResult ends an exec stream.
type ExecResult struct {
	ExitCode int `json:"exit_code"`
}

// streamWriter turns writes into events of one type; shared by the stdout and stderr copiers through mu.
type streamWriter struct {
	mu  *sync.Mutex
	ew  *eventWriter
	typ string
}

func (sw streamWriter) Write(p []byte) (int, error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if err := sw.ew.send(sw.typ, string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	name := r.PathValue("name")
	if _, err := s.b.Get(name); err != nil {
		writeErr(w, err)
		return
	}
	ew := newEventWriter(w)
	var mu sync.Mutex
	code, err := s.b.Exec(r.Context(), name, req.Args, req.Env, streamWriter{&mu, ew, EventStdout}, streamWriter{&mu, ew, EventStderr})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		ew.fail(err)
		return
	}
	_ = ew.send(EventResult, ExecResult{ExitCode: code})
}

// progressSink sends progress events from any goroutine.
func progressSink(ew *eventWriter, mu *sync.Mutex) node.ProgressFunc {
	return func(p node.Progress) {
		mu.Lock()
		defer mu.Unlock()
		_ = ew.send(EventProgress, p)
	}
}

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	var opts node.CheckpointOptions
	if err := decodeBody(r, &opts); err != nil {
		writeErr(w, err)
		return
	}
	s.longOp(w, r, func(ctx context.Context, p node.ProgressFunc) (any, error) {
		return s.b.Checkpoint(ctx, r.PathValue("name"), opts, p)
	})
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	var opts node.RestoreOptions
	if err := decodeBody(r, &opts); err != nil {
		writeErr(w, err)
		return
	}
	s.longOp(w, r, func(ctx context.Context, p node.ProgressFunc) (any, error) {
		return s.b.Restore(ctx, r.PathValue("name"), opts, p)
	})
}

// ImportRequest is the body of an image import: the path is read by the agent, on the agent's host.
type ImportRequest struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	var req ImportRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	s.longOp(w, r, func(ctx context.Context, p node.ProgressFunc) (any, error) {
		return s.b.ImportImage(ctx, req.Name, req.Path, p)
	})
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	list, err := s.b.ListImages()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, 200, list)
}

// longOp runs op, streaming its progress, and ends the stream with its result or error. An operation is not
// cancelled when the client goes away: it finishes (or rolls back) on its own, so that nothing is left half done.
func (s *Server) longOp(w http.ResponseWriter, r *http.Request, op func(context.Context, node.ProgressFunc) (any, error)) {
	ew := newEventWriter(w)
	var mu sync.Mutex
	res, err := op(context.WithoutCancel(r.Context()), progressSink(ew, &mu))
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		s.log.Warn("operation failed", "path", r.URL.Path, "err", err)
		ew.fail(err)
		return
	}
	_ = ew.send(EventResult, res)
}
