package sshx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// roleCheckingAPI is what the API layer does: viewers may only read.
func roleCheckingAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		p, ok := PeerFromContext(r.Context())
		if !ok {
			http.Error(w, "no peer", http.StatusInternalServerError)
			return
		}
		if r.Method != http.MethodGet && p.Role == RoleViewer {
			http.Error(w, "viewer "+p.Name+" may only read; ask for the controller role", http.StatusForbidden)
			return
		}
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, p.Role, p.Name)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		f := w.(http.Flusher)
		for i := range 100 {
			fmt.Fprintf(w, "line %d %s\n", i, strings.Repeat("x", 1000))
			f.Flush()
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	return mux
}

type apiFixture struct {
	ca    *CA
	srv   *Server
	addr  string
	auth  *fakeAuthorizer
	agent *Identity
}

func startAPI(t *testing.T) *apiFixture {
	f := &apiFixture{ca: newTestCA(t), auth: &fakeAuthorizer{}}
	f.agent = newTestIdentity(t, f.ca, "n2")
	f.srv, f.addr = startServer(t, newTestIdentity(t, f.ca, "n1"), "", func(c *ServerConfig) { c.Authorizer = f.auth })
	ln := f.srv.HTTPListener(ChannelAPI, []string{RoleAgent, RoleController, RoleViewer})
	// ConnContext with PeerFromConn, written out to show the helper; the
	// short form is ConnContext: sshx.ConnContext.
	hs := &http.Server{Handler: roleCheckingAPI(), ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		if _, ok := PeerFromConn(c); !ok {
			t.Errorf("PeerFromConn: connection %T has no peer", c)
		}
		return ConnContext(ctx, c)
	}}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	f.srv.Handle(ChannelRaft, []string{RoleAgent}, echoHandler)
	return f
}

func (f *apiFixture) client(t *testing.T, d *Dialer) (*http.Client, *Pool) {
	pool := NewPool(d)
	t.Cleanup(func() { pool.Close() })
	tr := HTTPTransport(pool, ChannelAPI)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, pool
}

func (f *apiFixture) operator(t *testing.T, role, name string) (*http.Client, *Pool) {
	key := newOperatorKey(t)
	f.auth.add(key, role, name)
	return f.client(t, &Dialer{Signer: key, HostCA: f.ca.PublicKey(), Logger: testLogger(t)})
}

func do(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestRoles(t *testing.T) {
	f := startAPI(t)
	viewer, viewerPool := f.operator(t, RoleViewer, "vic")
	controller, controllerPool := f.operator(t, RoleController, "carol")
	agent, agentPool := f.client(t, &Dialer{Identity: f.agent})
	url := "http://" + f.addr + "/whoami"

	tests := []struct {
		name   string
		c      *http.Client
		method string
		code   int
		body   string
	}{
		{"viewer GET", viewer, "GET", 200, "GET viewer vic"},
		{"viewer POST", viewer, "POST", 403, "viewer vic may only read; ask for the controller role"},
		{"controller POST", controller, "POST", 200, "POST controller carol"},
		{"agent POST", agent, "POST", 200, "POST agent n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, tt.c, tt.method, url)
			if code != tt.code || body != tt.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tt.code, tt.body)
			}
		})
	}

	ctx := testContext(t)
	ch, err := agentPool.Open(ctx, f.addr, ChannelRaft, nil)
	if err != nil {
		t.Fatalf("agent opening raft channel: %v", err)
	}
	ch.Close()
	for name, p := range map[string]*Pool{"controller": controllerPool, "viewer": viewerPool} {
		if _, err := p.Open(ctx, f.addr, ChannelRaft, nil); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s opening raft channel: err = %v, want ErrForbidden", name, err)
		}
		if _, err := p.Tunnel(ctx, f.addr, 1); !errors.Is(err, ErrTunnelRefused) {
			t.Errorf("%s opening tunnel: err = %v, want ErrTunnelRefused", name, err)
		}
	}
	if _, err := agentPool.Open(ctx, f.addr, "no-such-type", nil); !errors.Is(err, ErrUnknownChannel) {
		t.Errorf("unknown channel type: err = %v, want ErrUnknownChannel", err)
	}
}

func TestHTTPOverSSH(t *testing.T) {
	f := startAPI(t)
	c, _ := f.client(t, &Dialer{Identity: f.agent})
	base := "http://" + f.addr

	t.Run("streamed response", func(t *testing.T) {
		resp, err := c.Get(base + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n != 100 || resp.ContentLength != -1 {
			t.Fatalf("got %d lines, content length %d; want 100 lines, chunked", n, resp.ContentLength)
		}
	})

	t.Run("8 MiB upload echoed", func(t *testing.T) {
		data := bytes.Repeat([]byte("ferry!"), 8<<20/6)
		resp, err := c.Post(base+"/echo", "application/octet-stream", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		io.Copy(h, resp.Body)
		if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("echoed body differs")
		}
	})

	t.Run("concurrent requests", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				resp, err := c.Get(base + "/whoami")
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "GET agent n2" {
					t.Errorf("body %q", b)
				}
			})
		}
		wg.Wait()
	})
}
