package sshx

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxJoinMessage bounds each JSON message on the join channel.
const maxJoinMessage = 64 << 10

// JoinGrant is what a cluster gives a node that joined: its certificates,
// the CA to trust, the cluster secret (for gossip and for issuing tokens)
// and the SSH addresses of current members.
type JoinGrant struct {
	HostCert      []byte   `json:"host_cert"` // ssh.Certificate.Marshal()
	UserCert      []byte   `json:"user_cert"` // ssh.Certificate.Marshal()
	CA            []byte   `json:"ca"`        // ssh.PublicKey.Marshal()
	ClusterSecret []byte   `json:"cluster_secret"`
	Peers         []string `json:"peers"`
}

func (g *JoinGrant) parse() (host, user *ssh.Certificate, ca ssh.PublicKey, err error) {
	bad := func(what string, err error) error {
		return fmt.Errorf("%w: join grant: %s: %v", ErrIdentity, what, err)
	}
	if ca, err = ssh.ParsePublicKey(g.CA); err != nil {
		return nil, nil, nil, bad("CA key", err)
	}
	certs := make([]*ssh.Certificate, 2)
	for i, b := range [][]byte{g.HostCert, g.UserCert} {
		k, err := ssh.ParsePublicKey(b)
		if err != nil {
			return nil, nil, nil, bad("certificate", err)
		}
		c, ok := k.(*ssh.Certificate)
		if !ok {
			return nil, nil, nil, bad("certificate", errors.New("not a certificate"))
		}
		certs[i] = c
	}
	return certs[0], certs[1], ca, nil
}

type joinRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"` // authorized_keys format
}

type joinResponse struct {
	Grant *JoinGrant `json:"grant,omitempty"`
	Error string     `json:"error,omitempty"`
}

// CAJoinHandler is a JoinHandler for agents that hold the CA key: a token
// is valid when its fingerprint is the CA's and its secret equals Secret
// (compared in constant time).
type CAJoinHandler struct {
	CA       *CA
	Secret   []byte
	Validity time.Duration   // of issued certificates; zero: DefaultCertValidity
	Peers    func() []string // current members' SSH addresses; may be nil
	// Admit may refuse a node name (e.g. one already taken by another
	// key). Nil admits every name.
	Admit func(nodeName string, pub ssh.PublicKey) error
}

// CheckToken implements JoinHandler.
func (h *CAJoinHandler) CheckToken(token string) error {
	fp, secret, err := ParseToken(token)
	if err != nil {
		return err
	}
	fpOK := subtle.ConstantTimeCompare([]byte(fp), []byte(h.CA.Fingerprint())) == 1
	secretOK := subtle.ConstantTimeCompare(secret, h.Secret) == 1
	if !fpOK || !secretOK || len(h.Secret) < MinSecretLen {
		return fmt.Errorf("%w: the token is not valid for this cluster", ErrJoinRefused)
	}
	return nil
}

// Join implements JoinHandler.
func (h *CAJoinHandler) Join(token string, pub ssh.PublicKey, nodeName string) (*JoinGrant, error) {
	if err := h.CheckToken(token); err != nil {
		return nil, err
	}
	if h.Admit != nil {
		if err := h.Admit(nodeName, pub); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrJoinRefused, err)
		}
	}
	host, user, err := h.CA.SignAgent(pub, nodeName, h.Validity)
	if err != nil {
		return nil, err
	}
	g := &JoinGrant{
		HostCert:      host.Marshal(),
		UserCert:      user.Marshal(),
		CA:            h.CA.PublicKey().Marshal(),
		ClusterSecret: append([]byte(nil), h.Secret...),
	}
	if h.Peers != nil {
		g.Peers = h.Peers()
	}
	return g, nil
}

// serveJoin is the raw route of ChannelJoin.
func (s *Server) serveJoin(ctx context.Context, sc *ssh.ServerConn, p Peer, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	defer ch.Close()
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	resp := s.join(sc, p, ch)
	json.NewEncoder(ch).Encode(resp)
	ch.CloseWrite()
}

func (s *Server) join(sc *ssh.ServerConn, p Peer, r io.Reader) joinResponse {
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r, maxJoinMessage)).Decode(&req); err != nil {
		return joinResponse{Error: "malformed join request: " + err.Error()}
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		return joinResponse{Error: "malformed public key: " + err.Error()}
	}
	if req.Name != p.Name {
		return joinResponse{Error: fmt.Sprintf("node name %q differs from the SSH user %q", req.Name, p.Name)}
	}
	token := sc.Permissions.Extensions[extToken]
	g, err := s.cfg.JoinHandler.Join(token, pub, req.Name)
	if err != nil {
		s.log.Warn("join refused", "node", req.Name, "fingerprint", ssh.FingerprintSHA256(pub), "err", err)
		return joinResponse{Error: err.Error()}
	}
	s.log.Info("node joined", "node", req.Name, "fingerprint", ssh.FingerprintSHA256(pub), "remote", sc.RemoteAddr().String())
	return joinResponse{Grant: g}
}

// Join asks the agent at addr to admit this node, named nodeName, whose key
// is signer. token comes from `ferry cluster token`; caFingerprint, if not
// empty, must match the fingerprint in the token. Before sending anything
// Join checks that the server's host certificate was signed by the CA the
// token names, so a man in the middle can neither learn the token nor hand
// out certificates. The grant is checked (certificates for signer's key,
// signed by that CA) before it is returned; Identity.Apply takes it.
func Join(ctx context.Context, addr, token string, signer ssh.Signer, nodeName string, caFingerprint string) (*JoinGrant, error) {
	fp, _, err := ParseToken(token)
	if err != nil {
		return nil, err
	}
	if caFingerprint != "" && caFingerprint != fp {
		return nil, fmt.Errorf("%w: the token is for CA %s, but %s was expected", ErrBadToken, fp, caFingerprint)
	}
	cfg := &ssh.ClientConfig{
		User:              nodeName,
		Auth:              []ssh.AuthMethod{ssh.Password(strings.TrimSpace(token))},
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01},
		Timeout:           DefaultDialTimeout,
		Config:            ssh.Config{Ciphers: DefaultCiphers},
		HostKeyCallback: hostCertCallback(func(sig ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(sig); got != fp {
				return fmt.Errorf("it is not a member of the cluster in the token: its CA is %s, the token's is %s", got, fp)
			}
			return nil
		}),
	}
	client, err := handshake(ctx, addr, cfg, DefaultDialTimeout)
	if err != nil {
		var hk *hostKeyError
		if errors.As(err, &hk) {
			return nil, hk.err
		}
		if isAuthFailure(err) {
			return nil, fmt.Errorf("%w by %s: the token is not valid for this cluster; get one with `ferry cluster token` on a member", ErrJoinRefused, addr)
		}
		return nil, err
	}
	defer client.Close()
	g, err := exchangeJoin(ctx, client, addr, nodeName, signer.PublicKey())
	if err != nil {
		return nil, err
	}
	id := &Identity{Signer: signer, Name: nodeName}
	if err := id.Apply(g); err != nil {
		return nil, fmt.Errorf("join via %s: the grant does not fit: %w", addr, err)
	}
	if got := ssh.FingerprintSHA256(id.CA); got != fp {
		return nil, fmt.Errorf("%w: join via %s: the grant names CA %s, the token %s", ErrUnknownCA, addr, got, fp)
	}
	return g, nil
}

func exchangeJoin(ctx context.Context, client *ssh.Client, addr, nodeName string, pub ssh.PublicKey) (*JoinGrant, error) {
	c := &Conn{client: client, addr: addr, cancel: func() {}}
	ch, err := c.OpenChannel(ctx, ChannelJoin, nil)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	req := joinRequest{Name: nodeName, PublicKey: string(ssh.MarshalAuthorizedKey(pub))}
	if err := json.NewEncoder(ch).Encode(req); err != nil {
		return nil, fmt.Errorf("join via %s: %w", addr, err)
	}
	ch.CloseWrite()
	var resp joinResponse
	if err := json.NewDecoder(io.LimitReader(ch, maxJoinMessage)).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("join via %s: reading the grant: %w", addr, err)
	}
	if resp.Error != "" || resp.Grant == nil {
		return nil, fmt.Errorf("%w by %s: %s", ErrJoinRefused, addr, resp.Error)
	}
	return resp.Grant, nil
}
