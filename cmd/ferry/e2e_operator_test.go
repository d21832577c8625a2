package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/node/api"
	"golang.org/x/crypto/ssh"
)

// operatorKey is an SSH key made for a test: an unencrypted OpenSSH private key file and its .pub.
type operatorKey struct {
	priv, pub string
	fp        string
}

func newOperatorKey(t *testing.T, dir, name string) operatorKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	k := operatorKey{priv: filepath.Join(dir, name), pub: filepath.Join(dir, name+".pub"), fp: ssh.FingerprintSHA256(signer.PublicKey())}
	pubLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + name + "\n"
	if err := os.WriteFile(k.priv, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.pub, []byte(pubLine), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// remote is the command line of one person on another machine: their own HOME (so known_cas is theirs and
// the real ~/.config is never touched), no ssh-agent, and --addr ssh://.
type remote struct {
	a    *testAgent
	home string
	addr string
}

func (r remote) env(identity string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", k == "XDG_CONFIG_HOME", k == "SSH_AUTH_SOCK", strings.HasPrefix(k, "FERRY_"):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+r.home, "FERRY_ADDR=ssh://"+r.addr)
	if identity != "" {
		env = append(env, "FERRY_IDENTITY="+identity)
	}
	return append(env, extra...)
}

func (r remote) as(k operatorKey, args ...string) result {
	r.a.t.Helper()
	return r.a.run(r.env(k.priv), args...)
}

func (r remote) must(k operatorKey, args ...string) string {
	r.a.t.Helper()
	res := r.as(k, args...)
	if res.code != 0 {
		r.a.t.Fatalf("ferry %s (as %s): exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), filepath.Base(k.priv), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// refused expects exit status 1 and every one of want in stderr.
func refused(t *testing.T, res result, what string, want ...string) {
	t.Helper()
	t.Logf("%s: exit %d: %s", what, res.code, strings.TrimSpace(res.stderr))
	if res.code != 1 {
		t.Fatalf("%s: exit %d, want 1\nstdout: %s\nstderr: %s", what, res.code, res.stdout, res.stderr)
	}
	for _, w := range want {
		if !strings.Contains(res.stderr, w) {
			t.Fatalf("%s: stderr %q does not say %q", what, res.stderr, w)
		}
	}
}

// sshAddr is the agent's SSH address, from `ferry node ls` on its socket.
func (a *testAgent) sshAddr() string {
	a.t.Helper()
	var nodes []api.NodeView
	if err := json.Unmarshal([]byte(a.must("node", "ls", "-o", "json")), &nodes); err != nil || len(nodes) != 1 || nodes[0].Addr == "" {
		a.t.Fatalf("node ls: %v %+v", err, nodes)
	}
	return nodes[0].Addr
}

// TestOperatorSSH drives the command line over SSH with operator keys of each kind: none, unknown, viewer,
// controller, a removed viewer (with a session open), and an agent whose CA is not the one recorded.
func TestOperatorSSH(t *testing.T) {
	a := startAgent(t)
	a.importBusybox()
	keys := t.TempDir()
	ctl, view, stranger := newOperatorKey(t, keys, "carol"), newOperatorKey(t, keys, "vic"), newOperatorKey(t, keys, "mallory")
	r := remote{a: a, home: t.TempDir(), addr: a.sshAddr()}
	knownCAs := filepath.Join(r.home, ".config", "ferry", "known_cas")

	// Root adds the first controller on the socket.
	if out := a.must("operator", "add", "--role", "controller", ctl.pub); !strings.Contains(out, ctl.fp) {
		t.Fatalf("operator add: %s", out)
	}
	var ca api.CAResponse
	if err := json.Unmarshal([]byte(a.must("cluster", "ca", "-o", "json")), &ca); err != nil {
		t.Fatal(err)
	}

	t.Run("no key", func(t *testing.T) {
		refused(t, a.run(r.env(""), "ps"), "ps without a key", "no SSH key", "--identity")
		for _, auth := range [][]ssh.AuthMethod{nil, {ssh.Password("not-a-token")}} {
			cfg := &ssh.ClientConfig{User: "ferry", Auth: auth, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
			if c, err := ssh.Dial("tcp", r.addr, cfg); err == nil {
				c.Close()
				t.Fatalf("the agent accepted a client with auth %v", auth)
			}
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		res := r.as(stranger, "ps")
		refused(t, res, "ps with an unknown key", "the key "+stranger.fp, "is not an operator of the cluster at "+r.addr,
			"ferry operator add --role viewer")
		if !strings.Contains(res.stderr, "first contact with "+r.addr) || !strings.Contains(res.stderr, ca.Fingerprint) {
			t.Fatalf("the first contact should say which CA it trusted: %s", res.stderr)
		}
		if b, err := os.ReadFile(knownCAs); err != nil || !strings.HasPrefix(string(b), r.addr+" ssh-ed25519 ") {
			t.Fatalf("known_cas after first contact: %q %v", b, err)
		}
	})
	t.Run("viewer reads only", func(t *testing.T) {
		r.must(ctl, "operator", "add", "--role", "viewer", view.pub)
		var ops []api.OperatorView
		if err := json.Unmarshal([]byte(r.must(view, "operator", "ls", "-o", "json")), &ops); err != nil || len(ops) != 2 {
			t.Fatalf("operator ls: %v %+v", err, ops)
		}
		r.must(view, "ps")
		if out := r.must(view, "node", "ls"); !strings.Contains(out, a.name) {
			t.Fatalf("node ls: %s", out)
		}
		forbidden := []string{"forbidden", "vic is a viewer and may only read"}
		refused(t, r.as(view, "run", "--name", "nope", "busybox", "--", "sleep", "1000"), "viewer runs", forbidden...)
		refused(t, r.as(view, "operator", "add", "--role", "controller", stranger.pub), "viewer adds an operator", forbidden...)
		refused(t, r.as(view, "operator", "rm", "carol"), "viewer removes an operator", forbidden...)
		refused(t, r.as(view, "cluster", "token"), "viewer asks for a join token", "forbidden")
	})
	t.Run("controller runs and stops", func(t *testing.T) {
		r.must(ctl, "run", "--name", "sl", "busybox", "--", "sleep", "1000")
		if out := r.must(ctl, "ps"); !strings.Contains(out, "sl") || !strings.Contains(out, "running") {
			t.Fatalf("ps: %s", out)
		}
		r.must(ctl, "stop", "--time", "1s", "sl")
	})
	t.Run("removed viewer", func(t *testing.T) {
		r.must(ctl, "run", "--name", "sl2", "busybox", "--", "sleep", "1000")
		follow := exec.Command(bins.ferry, "logs", "--follow", "sl2")
		follow.Env = r.env(view.priv)
		var ferr bytes.Buffer
		follow.Stderr = &ferr
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- follow.Wait() }()
		t.Cleanup(func() { _ = follow.Process.Kill() })
		time.Sleep(time.Second) // the viewer's session is open
		select {
		case err := <-done:
			t.Fatalf("logs --follow ended early: %v %s", err, ferr.String())
		default:
		}
		if out := r.must(ctl, "operator", "rm", "vic"); !strings.Contains(out, "closed 1 open connection") {
			t.Fatalf("operator rm: %s", out)
		}
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("the removed viewer's logs --follow ended without an error")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the removed viewer's open session was not closed")
		}
		refused(t, r.as(view, "ps"), "ps by a removed viewer", "the key "+view.fp, "is not an operator")
		r.must(ctl, "stop", "--time", "1s", "sl2")
	})
	t.Run("CA changed", func(t *testing.T) {
		other := newOperatorKey(t, keys, "other-ca")
		otherPub, _ := os.ReadFile(other.pub)
		if err := os.WriteFile(knownCAs, []byte("# edited\n"+r.addr+" "+string(otherPub)), 0o600); err != nil {
			t.Fatal(err)
		}
		refused(t, r.as(ctl, "ps"), "ps against another CA",
			"has a host certificate of cluster CA "+ca.Fingerprint, "records CA "+other.fp, knownCAs+" line 2", "delete that line")
		// Pinning the right CA explicitly works whatever known_cas says; pinning another is refused.
		caFile := filepath.Join(keys, "cluster-ca.pub")
		if err := os.WriteFile(caFile, []byte(ca.PublicKey+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if res := a.run(r.env(ctl.priv, "FERRY_CA_KEY="+caFile), "ps"); res.code != 0 {
			t.Fatalf("ps with FERRY_CA_KEY: %d %s", res.code, res.stderr)
		}
		refused(t, a.run(r.env(ctl.priv, "FERRY_CA_KEY="+other.pub), "ps"), "ps with another pinned CA", "signed by "+ca.Fingerprint)
	})
}
