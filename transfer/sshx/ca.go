package sshx

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
)

// Principal is the only principal in every certificate the cluster CA signs,
// for host and user certificates alike. Agents are told apart by the
// certificate's KeyId (the node name), not by principals, so a certificate
// stays valid when a node's address changes.
const Principal = "ferry-agent"

// DefaultCertValidity is how long agent certificates are valid. Rotation is
// not implemented: an agent whose certificates expire must join again.
const DefaultCertValidity = 365 * 24 * time.Hour

// clockSkew is subtracted from ValidAfter so that a freshly signed
// certificate is accepted by a peer whose clock is a little behind.
const clockSkew = 5 * time.Minute

// CA is the cluster certificate authority: an ed25519 key that signs every
// agent's host and user certificates. The first agent makes it; it is kept
// (0600) on the agents that admit joins. A CA is safe for concurrent use.
type CA struct {
	key    ed25519.PrivateKey
	signer ssh.Signer
}

// NewCA makes a CA with a fresh ed25519 key.
func NewCA() (*CA, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	return newCA(priv)
}

func newCA(priv ed25519.PrivateKey) (*CA, error) {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("CA signer: %w", err)
	}
	return &CA{key: priv, signer: s}, nil
}

// LoadCA reads a CA key written by Save (an unencrypted OpenSSH private key).
func LoadCA(path string) (*CA, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load cluster CA: %w", err)
	}
	priv, err := parseEd25519(data)
	if err != nil {
		return nil, fmt.Errorf("load cluster CA %s: %w", path, err)
	}
	return newCA(priv)
}

// Save writes the CA key to path in OpenSSH PEM format with mode 0600.
func (c *CA) Save(path string) error {
	return writeKey(path, c.key, "ferry cluster CA")
}

// PublicKey returns the CA's public key, which agents trust as host and
// user authority.
func (c *CA) PublicKey() ssh.PublicKey { return c.signer.PublicKey() }

// Fingerprint returns the SHA256 fingerprint of the CA key
// ("SHA256:base64..."), as printed by ssh-keygen -l and carried in tokens.
func (c *CA) Fingerprint() string { return ssh.FingerprintSHA256(c.PublicKey()) }

// SignAgent signs pub, an agent's key, twice: a host certificate the agent
// presents as its server host key and a user certificate it presents when
// it dials another agent. Both have the single principal Principal, KeyId
// nodeName, and are valid from a few minutes ago for validity
// (DefaultCertValidity if zero).
func (c *CA) SignAgent(pub ssh.PublicKey, nodeName string, validity time.Duration) (hostCert, userCert *ssh.Certificate, err error) {
	if pub == nil || nodeName == "" {
		return nil, nil, fmt.Errorf("%w: SignAgent needs a public key and a node name", ErrIdentity)
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, nil, fmt.Errorf("%w: SignAgent got a certificate for %s; pass the plain key", ErrIdentity, nodeName)
	}
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	hostCert, err = c.sign(pub, nodeName, ssh.HostCert, validity)
	if err != nil {
		return nil, nil, err
	}
	userCert, err = c.sign(pub, nodeName, ssh.UserCert, validity)
	if err != nil {
		return nil, nil, err
	}
	return hostCert, userCert, nil
}

func (c *CA) sign(pub ssh.PublicKey, name string, typ uint32, validity time.Duration) (*ssh.Certificate, error) {
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        typ,
		KeyId:           name,
		ValidPrincipals: []string{Principal},
		ValidAfter:      uint64(now.Add(-clockSkew).Unix()),
		ValidBefore:     uint64(now.Add(validity).Unix()),
	}
	if err := cert.SignCert(rand.Reader, c.signer); err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", name, err)
	}
	return cert, nil
}

// certChecker returns a checker that accepts only certificates signed by ca.
func certChecker(ca ssh.PublicKey) *ssh.CertChecker {
	isCA := func(auth ssh.PublicKey) bool { return keysEqual(auth, ca) }
	return &ssh.CertChecker{
		IsUserAuthority: isCA,
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return isCA(auth) },
	}
}

// checkAgentCert verifies that cert is of type typ, signed by ca, valid now
// and carries Principal. The error wraps ErrUnknownCA or ErrUnauthorized.
func checkAgentCert(ca ssh.PublicKey, cert *ssh.Certificate, typ uint32) error {
	if cert.CertType != typ {
		return fmt.Errorf("%w: certificate %q has type %d, want %d", ErrUnauthorized, cert.KeyId, cert.CertType, typ)
	}
	if !keysEqual(cert.SignatureKey, ca) {
		return fmt.Errorf("%w: certificate %q was signed by %s, the cluster CA is %s",
			ErrUnknownCA, cert.KeyId, ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(ca))
	}
	if err := certChecker(ca).CheckCert(Principal, cert); err != nil {
		return fmt.Errorf("%w: certificate %q: %v; rejoin the node with a new token", ErrUnauthorized, cert.KeyId, err)
	}
	return nil
}

func keysEqual(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && bytes.Equal(a.Marshal(), b.Marshal())
}

func writeKey(path string, key ed25519.PrivateKey, comment string) error {
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", comment, err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(block), 0o600)
}

func parseEd25519(data []byte) (ed25519.PrivateKey, error) {
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, err
	}
	switch k := raw.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ed25519.PrivateKey:
		return *k, nil
	}
	return nil, fmt.Errorf("%w: key is %T, want ed25519", ErrIdentity, raw)
}

// writeFileAtomic writes data to a temporary file beside path and renames it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
