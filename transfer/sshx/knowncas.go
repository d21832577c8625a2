package sshx

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// KnownCAs is an operator's trust-on-first-use record of cluster CAs, kept
// in a file (the command line uses ~/.config/ferry/known_cas). Each line is
// an agent's address and the public key of the CA that signs its host
// certificate, in authorized_keys form:
//
//	10.0.0.5:7946 ssh-ed25519 AAAAC3Nza... ferry cluster CA, trusted 2025-01-31
//
// Blank lines and lines starting with # are ignored. An address may have
// several lines (a CA being replaced); a host certificate signed by any of
// them is accepted. A KnownCAs is safe for concurrent use; several
// processes may append to the same file.
type KnownCAs struct {
	path string

	mu      sync.Mutex
	entries []KnownCA
}

// KnownCA is one line of a known CAs file.
type KnownCA struct {
	Addr string        // HOST:PORT, as dialled
	CA   ssh.PublicKey // the cluster CA's public key
	Line int           // 1-based line number in the file; 0 for an entry not yet written
}

// LoadKnownCAs reads the known CAs file at path. A missing file is an empty
// list (it is created on the first Add).
func LoadKnownCAs(path string) (*KnownCAs, error) {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read known cluster CAs: %w", err)
	}
	entries, err := ParseKnownCAs(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &KnownCAs{path: path, entries: entries}, nil
}

// ParseKnownCAs parses the content of a known CAs file. The error names
// the first bad line and wraps ErrConfig.
func ParseKnownCAs(data []byte) ([]KnownCA, error) {
	var out []KnownCA
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		addr, rest, _ := strings.Cut(line, " ")
		addr = NormalizeAddr(addr)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: line %d: %q is not HOST:PORT; each line is an agent address and a CA public key", ErrConfig, i+1, addr)
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(rest)))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: the CA of %s is not a public key in authorized_keys form: %v; fix or delete the line", ErrConfig, i+1, addr, err)
		}
		out = append(out, KnownCA{Addr: addr, CA: key, Line: i + 1})
	}
	return out, nil
}

// NormalizeAddr returns the form of an agent address used as the key of a
// known CAs file: without an ssh:// prefix, the host in lower case.
func NormalizeAddr(addr string) string {
	addr = strings.TrimPrefix(addr, "ssh://")
	if host, port, err := net.SplitHostPort(addr); err == nil {
		return net.JoinHostPort(strings.ToLower(host), port)
	}
	return strings.ToLower(addr)
}

// Path is the file the list was read from and is written to.
func (k *KnownCAs) Path() string { return k.path }

// Lookup returns the entries recorded for addr, in file order.
func (k *KnownCAs) Lookup(addr string) []KnownCA {
	addr = NormalizeAddr(addr)
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []KnownCA
	for _, e := range k.entries {
		if e.Addr == addr {
			out = append(out, e)
		}
	}
	return out
}

// Add records ca as the CA of the agent at addr, appending a line to the
// file (made 0600, in a directory made 0700). Adding a CA already recorded
// for addr does nothing.
func (k *KnownCAs) Add(addr string, ca ssh.PublicKey) error {
	addr = NormalizeAddr(addr)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range k.entries {
		if e.Addr == addr && keysEqual(e.CA, ca) {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("record the cluster CA of %s: %w", addr, err)
	}
	f, err := os.OpenFile(k.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("record the cluster CA of %s: %w", addr, err)
	}
	line := fmt.Sprintf("%s %s ferry cluster CA, trusted %s\n", addr,
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca))), time.Now().UTC().Format("2006-01-02"))
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record the cluster CA of %s in %s: %w", addr, k.path, err)
	}
	k.entries = append(k.entries, KnownCA{Addr: addr, CA: ca})
	return nil
}

// HostKeyCallback returns a Dialer.HostKeyCallback that accepts only a
// valid host certificate (see the package comment) whose CA is recorded
// for the address dialled. For an address with no record it trusts the
// certificate's CA on first use: it records it with Add, then calls
// onTrust (if not nil) so that the caller can tell the person what it
// trusted. A certificate of another CA is refused with an error wrapping
// ErrUnknownCA that names both fingerprints and the line to delete.
func (k *KnownCAs) HostKeyCallback(onTrust func(addr string, ca ssh.PublicKey)) ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		known := k.Lookup(host)
		if cert, ok := key.(*ssh.Certificate); ok && cert.CertType == ssh.HostCert && len(known) > 0 && !anyCA(known, cert.SignatureKey) {
			return k.changedError(host, cert, known[0])
		}
		var signer ssh.PublicKey
		check := hostCertCallback(func(sig ssh.PublicKey) error {
			signer = sig
			return nil
		})
		if err := check(host, remote, key); err != nil {
			return err
		}
		if len(known) > 0 {
			return nil
		}
		if err := k.Add(host, signer); err != nil {
			return fmt.Errorf("%w; pin the CA instead with FERRY_CA_KEY=FILE (`ferry cluster ca` on a member prints it)", err)
		}
		if onTrust != nil {
			onTrust(NormalizeAddr(host), signer)
		}
		return nil
	}
}

func anyCA(known []KnownCA, sig ssh.PublicKey) bool {
	for _, e := range known {
		if keysEqual(e.CA, sig) {
			return true
		}
	}
	return false
}

func (k *KnownCAs) changedError(host string, cert *ssh.Certificate, was KnownCA) error {
	where := k.path
	if was.Line > 0 {
		where = fmt.Sprintf("%s line %d", k.path, was.Line)
	}
	return fmt.Errorf("%w: the agent at %s (node %q) has a host certificate of cluster CA %s, but %s records CA %s for this address. "+
		"If the cluster there was made anew on purpose, delete that line (or pin the new CA with FERRY_CA_KEY=FILE) and connect again; "+
		"otherwise something is impersonating the agent",
		ErrUnknownCA, NormalizeAddr(host), cert.KeyId, ssh.FingerprintSHA256(cert.SignatureKey), where, ssh.FingerprintSHA256(was.CA))
}
