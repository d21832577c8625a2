package sshx

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testWriter sends log lines to t.Log until the test has finished, then
// drops them (goroutines may still log while closing).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}

func testOutput(t testing.TB) io.Writer {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return w
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testOutput(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// fakeAuthorizer maps key fingerprints to roles, as raft state would.
type fakeAuthorizer struct {
	mu   sync.Mutex
	keys map[string][2]string // fingerprint -> role, name
}

func (a *fakeAuthorizer) add(s ssh.Signer, role, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys == nil {
		a.keys = map[string][2]string{}
	}
	a.keys[ssh.FingerprintSHA256(s.PublicKey())] = [2]string{role, name}
}

func (a *fakeAuthorizer) OperatorRole(fp string) (string, string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.keys[fp]
	return v[0], v[1], ok
}

func newTestCA(t testing.TB) *CA {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newTestIdentity(t testing.TB, ca *CA, name string) *Identity {
	t.Helper()
	id, err := ca.NewIdentity(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newOperatorKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts a server for id on 127.0.0.1 (on addr if not empty);
// mod may change the config. The server stops when the test ends.
func startServer(t testing.TB, id *Identity, addr string, mod func(*ServerConfig)) (*Server, string) {
	t.Helper()
	cfg := ServerConfig{Identity: id, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), ln)
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String()
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echoHandler copies a channel back to itself.
func echoHandler(_ context.Context, ch *Channel) {
	io.Copy(ch, ch)
	ch.CloseWrite()
}

func generateEd25519() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

func pemBytes(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
