package sshx

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func startJoinable(t *testing.T) (*CA, []byte, string) {
	ca := newTestCA(t)
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	jh := &CAJoinHandler{CA: ca, Secret: secret, Peers: func() []string { return []string{"10.0.0.1:7946"} }}
	srv, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", func(c *ServerConfig) { c.JoinHandler = jh })
	srv.Handle(ChannelRaft, []string{RoleAgent}, echoHandler)
	srv.Handle(ChannelAPI, []string{RoleAgent, RoleController, RoleViewer}, echoHandler)
	return ca, secret, addr
}

func TestJoin(t *testing.T) {
	ca, secret, addr := startJoinable(t)
	ctx := testContext(t)
	token := NewToken(ca.Fingerprint(), secret)

	id, err := GenerateIdentity("n2")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Join(ctx, addr, token, id.Signer, "n2", ca.Fingerprint())
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if !bytes.Equal(g.ClusterSecret, secret) || len(g.Peers) != 1 {
		t.Fatalf("grant secret/peers wrong: %+v", g)
	}
	if err := id.Apply(g); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	// The certificates authenticate: save, load, dial as an agent.
	dir := filepath.Join(t.TempDir(), "id")
	if err := id.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	pool := NewPool(&Dialer{Identity: loaded})
	defer pool.Close()
	ch, err := pool.Open(ctx, addr, ChannelRaft, nil)
	if err != nil {
		t.Fatalf("joined agent opening raft channel: %v", err)
	}
	ch.Close()
	if p := ch.(*Channel).Peer(); p.Role != RoleAgent || p.Name != "n1" {
		t.Fatalf("server peer = %+v, want agent n1", p)
	}
}

func TestJoinRefused(t *testing.T) {
	ca, secret, addr := startJoinable(t)
	other := newTestCA(t)
	ctx := testContext(t)
	signer := newOperatorKey(t)
	wrongSecret := bytes.Repeat([]byte{1}, len(secret))

	tests := []struct {
		name  string
		token string
		fp    string
		want  error
		says  string
	}{
		{"wrong secret", NewToken(ca.Fingerprint(), wrongSecret), "", ErrJoinRefused, "get one with `ferry cluster token`"},
		{"token of another cluster", NewToken(other.Fingerprint(), secret), "", ErrUnknownCA, "not a member of the cluster in the token"},
		{"fingerprint differs from the token's", NewToken(ca.Fingerprint(), secret), other.Fingerprint(), ErrBadToken, "expected"},
		{"garbage", "ferry1.!!!", "", ErrBadToken, "ferry cluster token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Join(ctx, addr, tt.token, signer, "n9", tt.fp)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tt.want, tt.says)
			}
			t.Log(err)
		})
	}

	t.Run("server without JoinHandler", func(t *testing.T) {
		_, addr2 := startServer(t, newTestIdentity(t, ca, "n3"), "", nil)
		_, err := Join(ctx, addr2, NewToken(ca.Fingerprint(), secret), signer, "n9", "")
		if !errors.Is(err, ErrJoinRefused) {
			t.Fatalf("err = %v, want ErrJoinRefused", err)
		}
	})
}

// A node holding a valid token may open only the join channel.
func TestJoiningRoleConfined(t *testing.T) {
	ca, secret, addr := startJoinable(t)
	cfg := &ssh.ClientConfig{
		User:            "n9",
		Auth:            []ssh.AuthMethod{ssh.Password(NewToken(ca.Fingerprint(), secret))},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	}
	client, err := handshake(testContext(t), addr, cfg, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := &Conn{client: client, addr: addr, cancel: func() {}}
	for _, typ := range []string{ChannelAPI, ChannelRaft, ChannelTunnel} {
		if _, err := c.OpenChannel(testContext(t), typ, TunnelExtra(22)); !isOpenRefusal(err) {
			t.Errorf("joining node opening %s: err = %v, want a refusal", typ, err)
		}
	}
}

func TestCASaveLoad(t *testing.T) {
	ca := newTestCA(t)
	path := filepath.Join(t.TempDir(), "ca_key")
	if err := ca.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Fingerprint() != ca.Fingerprint() {
		t.Fatal("loaded CA differs")
	}
	id := newTestIdentity(t, back, "n1")
	id.CA = ca.PublicKey()
	if err := id.Validate(); err != nil {
		t.Fatalf("certificate from the loaded CA: %v", err)
	}
}
