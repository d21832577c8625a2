package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// File names inside an identity directory.
const (
	KeyFile      = "agent_key"
	HostCertFile = "agent_key-host-cert.pub"
	UserCertFile = "agent_key-user-cert.pub"
	CAFile       = "ca.pub"
)

// Identity is an agent's credentials: one ed25519 key, the host and user
// certificates the cluster CA signed for it, and the CA public key it trusts.
// An Identity is read-only once made and safe to share between goroutines.
type Identity struct {
	Signer   ssh.Signer       // the agent's plain key
	HostCert *ssh.Certificate // presented as the server's host key
	UserCert *ssh.Certificate // presented when dialling another agent
	CA       ssh.PublicKey    // the only authority the agent trusts
	Name     string           // node name; the certificates' KeyId

	key ed25519.PrivateKey // for Save; nil when Signer came from elsewhere
}

// GenerateIdentity makes a fresh key for node name, without certificates:
// pass it to Join, then Apply the grant.
func GenerateIdentity(name string) (*Identity, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate agent key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	return &Identity{Signer: s, Name: name, key: priv}, nil
}

// NewIdentity makes a key for node name and signs it with c: used by the
// agent that creates the cluster, and by tests.
func (c *CA) NewIdentity(name string, validity time.Duration) (*Identity, error) {
	id, err := GenerateIdentity(name)
	if err != nil {
		return nil, err
	}
	id.HostCert, id.UserCert, err = c.SignAgent(id.Signer.PublicKey(), name, validity)
	if err != nil {
		return nil, err
	}
	id.CA = c.PublicKey()
	return id, nil
}

// Apply checks a join grant against the identity's key and, if it fits,
// takes its certificates and CA.
func (id *Identity) Apply(g *JoinGrant) error {
	host, user, ca, err := g.parse()
	if err != nil {
		return err
	}
	next := *id
	next.HostCert, next.UserCert, next.CA = host, user, ca
	if err := next.Validate(); err != nil {
		return err
	}
	*id = next
	return nil
}

// Validate checks that both certificates are for the identity's key, have
// the right types, name the identity and were signed by its CA.
func (id *Identity) Validate() error {
	if id.Signer == nil || id.HostCert == nil || id.UserCert == nil || id.CA == nil || id.Name == "" {
		return fmt.Errorf("%w: need Signer, HostCert, UserCert, CA and Name; join the cluster first", ErrIdentity)
	}
	for _, c := range []struct {
		cert *ssh.Certificate
		typ  uint32
	}{{id.HostCert, ssh.HostCert}, {id.UserCert, ssh.UserCert}} {
		if !keysEqual(c.cert.Key, id.Signer.PublicKey()) {
			return fmt.Errorf("%w: certificate %q is for key %s, not this agent's key %s",
				ErrIdentity, c.cert.KeyId, ssh.FingerprintSHA256(c.cert.Key), ssh.FingerprintSHA256(id.Signer.PublicKey()))
		}
		if c.cert.KeyId != id.Name {
			return fmt.Errorf("%w: certificate names %q, identity is %q", ErrIdentity, c.cert.KeyId, id.Name)
		}
		if err := checkAgentCert(id.CA, c.cert, c.typ); err != nil {
			return fmt.Errorf("%w: %w", ErrIdentity, err)
		}
	}
	return nil
}

// hostSigner is the signer the server presents: the key with its host
// certificate.
func (id *Identity) hostSigner() (ssh.Signer, error) {
	return ssh.NewCertSigner(id.HostCert, id.Signer)
}

// userSigner is the signer presented when dialling another agent.
func (id *Identity) userSigner() (ssh.Signer, error) {
	return ssh.NewCertSigner(id.UserCert, id.Signer)
}

// Save writes the identity into dir (created 0700): the private key (0600)
// and the two certificates and the CA key in authorized_keys format.
func (id *Identity) Save(dir string) error {
	if id.key == nil {
		return fmt.Errorf("%w: the private key is not known (Signer was not made by GenerateIdentity or LoadIdentity)", ErrIdentity)
	}
	if err := id.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	if err := writeKey(filepath.Join(dir, KeyFile), id.key, id.Name); err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	pubs := map[string]ssh.PublicKey{HostCertFile: id.HostCert, UserCertFile: id.UserCert, CAFile: id.CA}
	for name, k := range pubs {
		if err := writeFileAtomic(filepath.Join(dir, name), ssh.MarshalAuthorizedKey(k), 0o644); err != nil {
			return fmt.Errorf("save identity: %w", err)
		}
	}
	return nil
}

// LoadIdentity reads an identity written by Save and validates it.
func LoadIdentity(dir string) (*Identity, error) {
	data, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %w; has this node joined a cluster?", ErrIdentity, err)
	}
	priv, err := parseEd25519(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIdentity, filepath.Join(dir, KeyFile), err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	id := &Identity{Signer: s, key: priv}
	keys := map[string]ssh.PublicKey{}
	for _, name := range []string{HostCertFile, UserCertFile, CAFile} {
		if keys[name], err = readAuthorizedKey(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	var ok1, ok2 bool
	id.HostCert, ok1 = keys[HostCertFile].(*ssh.Certificate)
	id.UserCert, ok2 = keys[UserCertFile].(*ssh.Certificate)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%w: %s or %s is not a certificate", ErrIdentity, HostCertFile, UserCertFile)
	}
	id.CA = keys[CAFile]
	id.Name = id.HostCert.KeyId
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("load identity from %s: %w", dir, err)
	}
	return id, nil
}

func readAuthorizedKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIdentity, path, err)
	}
	return k, nil
}
