package sshx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestTokenRoundTrip(t *testing.T) {
	secret := bytes.Repeat([]byte{0xab}, 32)
	fp := "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	tok := NewToken(fp, secret)
	gotFP, gotSecret, err := ParseToken("  " + tok + "\n")
	if err != nil || gotFP != fp || !bytes.Equal(gotSecret, secret) {
		t.Fatalf("ParseToken(NewToken) = %q, %x, %v", gotFP, gotSecret, err)
	}
	for _, bad := range []string{"", "ferry2.AAAA", tok[:20], NewToken(fp, secret[:4]), NewToken("MD5:aa", secret)} {
		if _, _, err := ParseToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) err = %v, want ErrBadToken", bad, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add(NewToken("SHA256:x", bytes.Repeat([]byte{1}, 16)))
	f.Add("ferry1.")
	f.Add("ferry1.////")
	f.Fuzz(func(t *testing.T, s string) {
		fp, secret, err := ParseToken(s)
		if err != nil {
			return
		}
		if fp2, secret2, err := ParseToken(NewToken(fp, secret)); err != nil || fp2 != fp || !bytes.Equal(secret2, secret) {
			t.Fatalf("re-encoding %q does not round-trip", s)
		}
	})
}

func TestLoadSigner(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := generateEd25519()
	plain, _ := ssh.MarshalPrivateKey(priv, "op")
	enc, _ := ssh.MarshalPrivateKeyWithPassphrase(priv, "op", []byte("pw"))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	if _, err := LoadSigner(write("plain", pemBytes(plain))); err != nil {
		t.Fatalf("plain key: %v", err)
	}
	_, err := LoadSigner(write("enc", pemBytes(enc)))
	if !errors.Is(err, ErrEncryptedKey) || !bytes.Contains([]byte(err.Error()), []byte("ssh-add")) {
		t.Fatalf("encrypted key: err = %v, want ErrEncryptedKey suggesting ssh-add", err)
	}
}

func TestAgentSignersWithoutAgent(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := AgentSigners(); !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
}

func TestServerConfigValidate(t *testing.T) {
	if err := (ServerConfig{}).Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty config: %v", err)
	}
	id := newTestIdentity(t, newTestCA(t), "n1")
	cfg := DefaultServerConfig()
	cfg.Identity = id
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.TunnelRoles = []string{RoleJoining}
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("joining tunnels: %v", err)
	}
}
