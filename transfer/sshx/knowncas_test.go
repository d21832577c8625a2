package sshx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func authorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestParseKnownCAs(t *testing.T) {
	ca1, ca2 := newTestCA(t).PublicKey(), newTestCA(t).PublicKey()
	tests := []struct {
		name    string
		data    string
		want    []KnownCA // Addr, CA and Line compared
		wantErr string
	}{
		{name: "empty", data: ""},
		{name: "comments and blanks", data: "# ferry\n\n   \n# more\n"},
		{name: "one", data: "10.0.0.5:7946 " + authorizedLine(ca1) + " ferry cluster CA\n",
			want: []KnownCA{{Addr: "10.0.0.5:7946", CA: ca1, Line: 1}}},
		{name: "no comment, no newline", data: "h:1 " + authorizedLine(ca2),
			want: []KnownCA{{Addr: "h:1", CA: ca2, Line: 1}}},
		{name: "normalized", data: "# x\nssh://Agent.Example:22 " + authorizedLine(ca1),
			want: []KnownCA{{Addr: "agent.example:22", CA: ca1, Line: 2}}},
		{name: "ipv6 and two CAs for one address", data: "[::1]:7946 " + authorizedLine(ca1) + "\n[::1]:7946 " + authorizedLine(ca2) + "\n",
			want: []KnownCA{{Addr: "[::1]:7946", CA: ca1, Line: 1}, {Addr: "[::1]:7946", CA: ca2, Line: 2}}},
		{name: "address without port", data: "10.0.0.5 " + authorizedLine(ca1), wantErr: "line 1: \"10.0.0.5\" is not HOST:PORT"},
		{name: "fingerprint instead of key", data: "\n10.0.0.5:1 " + ssh.FingerprintSHA256(ca1), wantErr: "line 2: the CA of 10.0.0.5:1 is not a public key"},
		{name: "address only", data: "10.0.0.5:1", wantErr: "line 1: the CA of 10.0.0.5:1 is not a public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKnownCAs([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].Addr != tt.want[i].Addr || got[i].Line != tt.want[i].Line || !keysEqual(got[i].CA, tt.want[i].CA) {
					t.Errorf("entry %d = %s line %d, want %s line %d", i, got[i].Addr, got[i].Line, tt.want[i].Addr, tt.want[i].Line)
				}
			}
		})
	}
}

func TestKnownCAsAddAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg", "ferry", "known_cas")
	k, err := LoadKnownCAs(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	ca := newTestCA(t).PublicKey()
	for range 2 { // the second Add of the same CA writes nothing
		if err := k.Add("ssh://Host:7946", ca); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadKnownCAs(path)
	if err != nil {
		t.Fatal(err)
	}
	got := k2.Lookup("host:7946")
	if len(got) != 1 || !keysEqual(got[0].CA, ca) || got[0].Line != 1 {
		t.Fatalf("after reload: %+v", got)
	}
	if len(k2.Lookup("host:7947")) != 0 {
		t.Fatal("another port must not match")
	}
}

func TestKnownCAsHostKeyCallback(t *testing.T) {
	caA, caB := newTestCA(t), newTestCA(t)
	idA, idB := newTestIdentity(t, caA, "a-1"), newTestIdentity(t, caB, "b-1")
	const addr = "10.1.2.3:7946"
	tests := []struct {
		name    string
		file    string // known_cas content; %A and %B stand for the CAs
		key     ssh.PublicKey
		trusted bool   // onTrust called (first use)
		wantErr string // "" for accepted
	}{
		{name: "first use trusts", key: idA.HostCert, trusted: true},
		{name: "recorded CA", file: addr + " %A\n", key: idA.HostCert},
		{name: "one of two recorded", file: addr + " %B\n" + addr + " %A\n", key: idA.HostCert},
		{name: "other address recorded", file: "10.1.2.3:1 %B\n", key: idA.HostCert, trusted: true},
		{name: "CA changed", file: "# c\n" + addr + " %A\n", key: idB.HostCert,
			wantErr: "has a host certificate of cluster CA " + caB.Fingerprint() + ", but KNOWN line 2 records CA " + caA.Fingerprint()},
		{name: "plain host key", key: idA.Signer.PublicKey(), wantErr: "plain host key"},
		{name: "user certificate", key: idA.UserCert, wantErr: "user certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_cas")
			content := strings.NewReplacer("%A", authorizedLine(caA.PublicKey()), "%B", authorizedLine(caB.PublicKey())).Replace(tt.file)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadKnownCAs(path)
			if err != nil {
				t.Fatal(err)
			}
			var trusted ssh.PublicKey
			err = k.HostKeyCallback(func(_ string, ca ssh.PublicKey) { trusted = ca })(addr, nil, tt.key)
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "KNOWN", path)
				if err == nil || !errors.Is(err, ErrUnknownCA) || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want ErrUnknownCA saying %q", err, want)
				}
				if trusted != nil {
					t.Fatal("a refused key must not be trusted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (trusted != nil) != tt.trusted {
				t.Fatalf("trusted on first use = %v, want %v", trusted != nil, tt.trusted)
			}
			if tt.trusted {
				k2, _ := LoadKnownCAs(path)
				if got := k2.Lookup(addr); len(got) != 1 || !keysEqual(got[0].CA, caA.PublicKey()) {
					t.Fatalf("first use did not record the CA: %+v", got)
				}
			}
		})
	}
}

// TestKnownCAsDial connects to real servers: the first is trusted on first
// use, the same CA later is accepted, and a server of another CA on the
// same address is refused.
func TestKnownCAsDial(t *testing.T) {
	caA, caB := newTestCA(t), newTestCA(t)
	op := newOperatorKey(t)
	auth := &fakeAuthorizer{}
	auth.add(op, RoleViewer, "ann")
	srvA, addr := startServer(t, newTestIdentity(t, caA, "a-1"), "", func(c *ServerConfig) { c.Authorizer = auth })
	k, err := LoadKnownCAs(filepath.Join(t.TempDir(), "known_cas"))
	if err != nil {
		t.Fatal(err)
	}
	firstUse := 0
	dial := func() error {
		d := &Dialer{Signer: op, HostKeyCallback: k.HostKeyCallback(func(string, ssh.PublicKey) { firstUse++ }), Logger: testLogger(t)}
		c, err := d.Dial(testContext(t), addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	for range 2 {
		if err := dial(); err != nil {
			t.Fatal(err)
		}
	}
	if firstUse != 1 {
		t.Fatalf("trusted on first use %d times, want 1", firstUse)
	}
	srvA.Close()
	startServer(t, newTestIdentity(t, caB, "b-1"), addr, func(c *ServerConfig) { c.Authorizer = auth })
	err = dial()
	if !errors.Is(err, ErrUnknownCA) || !strings.Contains(err.Error(), caB.Fingerprint()) || !strings.Contains(err.Error(), caA.Fingerprint()) {
		t.Fatalf("CA changed: err = %v, want ErrUnknownCA naming both CAs", err)
	}
}

// FuzzParseKnownCAs: any file content parses or is refused with ErrConfig, never panics, and what parses
// has valid addresses and keys.
func FuzzParseKnownCAs(f *testing.F) {
	ca, err := NewCA()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("10.0.0.5:7946 " + authorizedLine(ca.PublicKey()) + " ferry cluster CA\n"))
	f.Add([]byte("# c\n\n[::1]:1 " + authorizedLine(ca.PublicKey())))
	f.Add([]byte("h:1 ssh-ed25519 AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseKnownCAs(data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		for _, e := range entries {
			if e.CA == nil || e.Line < 1 || NormalizeAddr(e.Addr) != e.Addr {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}
