package sshx

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// errAnyRefusal in a test table accepts any error.
var errAnyRefusal = errors.New("any refusal")

func TestAuthRefusals(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	auth := &fakeAuthorizer{}
	viewer := newOperatorKey(t)
	auth.add(viewer, RoleViewer, "vic")
	_, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", func(c *ServerConfig) { c.Authorizer = auth })

	foreign := newTestIdentity(t, other, "intruder")
	hostAsUser := newTestIdentity(t, ca, "swapped")
	hostAsUser.UserCert = hostAsUser.HostCert
	expired := newTestIdentity(t, ca, "old")
	var err error
	if expired.UserCert, err = ca.sign(expired.Signer.PublicKey(), "old", ssh.UserCert, -time.Minute); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		d    *Dialer
		want error
	}{
		{"operator key not in the list", &Dialer{Signer: newOperatorKey(t), HostCA: ca.PublicKey()}, ErrUnauthorized},
		{"agent signed by another CA", &Dialer{Identity: foreign, HostCA: ca.PublicKey()}, ErrUnauthorized},
		{"host certificate used as user certificate", &Dialer{Identity: hostAsUser}, ErrUnauthorized},
		{"expired agent certificate", &Dialer{Identity: expired}, ErrUnauthorized},
		{"agent does not trust the server's CA", &Dialer{Identity: foreign}, ErrUnknownCA},
		{"operator does not trust the server's CA", &Dialer{Signer: viewer, HostCA: other.PublicKey()}, ErrUnknownCA},
		{"operator pinning another host key", &Dialer{Signer: viewer, HostKeyCallback: ssh.FixedHostKey(newOperatorKey(t).PublicKey())}, errAnyRefusal},
		{"viewer accepted", &Dialer{Signer: viewer, HostCA: ca.PublicKey()}, nil},
		{"agent accepted", &Dialer{Identity: newTestIdentity(t, ca, "n2")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.d.Dial(testContext(t), addr)
			if tt.want == errAnyRefusal && err != nil {
				return
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				c.Close()
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Dial error = %v, want %v", err, tt.want)
			}
			t.Logf("refused as expected: %v", err)
		})
	}
}

func TestNoCredentialsRefused(t *testing.T) {
	ca := newTestCA(t)
	_, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", func(c *ServerConfig) { c.Authorizer = &fakeAuthorizer{} })
	cfg := &ssh.ClientConfig{User: "anon", HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	c, err := handshake(testContext(t), addr, cfg, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("a client without credentials was accepted")
	}
	if !isAuthFailure(err) {
		t.Fatalf("err = %v, want an authentication failure", err)
	}
	if _, err := (&Dialer{HostCA: ca.PublicKey()}).Dial(testContext(t), addr); !errors.Is(err, ErrConfig) {
		t.Fatalf("Dialer without key: err = %v, want ErrConfig", err)
	}
}

func TestOperatorErrorNamesFix(t *testing.T) {
	ca := newTestCA(t)
	_, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", func(c *ServerConfig) { c.Authorizer = &fakeAuthorizer{} })
	key := newOperatorKey(t)
	_, err := (&Dialer{Signer: key, HostCA: ca.PublicKey()}).Dial(testContext(t), addr)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(key.PublicKey())) ||
		!strings.Contains(err.Error(), "ferry operator add") {
		t.Fatalf("err = %v; want ErrUnauthorized naming the key and `ferry operator add`", err)
	}
}

func TestDisconnectOperator(t *testing.T) {
	ca := newTestCA(t)
	auth := &fakeAuthorizer{}
	key := newOperatorKey(t)
	auth.add(key, RoleController, "carol")
	srv, addr := startServer(t, newTestIdentity(t, ca, "n1"), "", func(c *ServerConfig) { c.Authorizer = auth })
	c, err := (&Dialer{Signer: key, HostCA: ca.PublicKey()}).Dial(testContext(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; len(srv.Peers()) == 0 && i < 500; i++ { // the server registers it just after the client returns
		time.Sleep(5 * time.Millisecond)
	}
	if n := srv.Disconnect(ssh.FingerprintSHA256(key.PublicKey())); n != 1 {
		t.Fatalf("Disconnect closed %d connections, want 1", n)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after Disconnect")
	}
}
