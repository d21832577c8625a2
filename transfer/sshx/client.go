package sshx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultDialTimeout bounds TCP connect plus SSH handshake when
// Dialer.Timeout is zero.
const DefaultDialTimeout = 10 * time.Second

// Dialer makes SSH connections to agents, as an agent (Identity set) or as
// an operator (Signer or Signers set). A Dialer must not be changed after
// its first Dial; it is then safe for concurrent use.
type Dialer struct {
	// Identity makes the dialer an agent: it presents Identity.UserCert
	// and trusts hosts whose certificate Identity.CA signed.
	Identity *Identity
	// Signer, or else Signers, is the operator's key (from LoadSigner or
	// AgentSigners); used when Identity is nil.
	Signer  ssh.Signer
	Signers []ssh.Signer
	// User is the SSH user name. Empty: the node name for agents,
	// "ferry" for operators. The server ignores it for authorisation.
	User string
	// HostCA is the authority that must have signed the server's host
	// certificate. Nil: Identity.CA for agents; for operators
	// HostKeyCallback must then be set.
	HostCA ssh.PublicKey
	// HostKeyCallback checks the host key when HostCA is nil and there is no
	// Identity, e.g. a trust-on-first-use known_hosts callback.
	HostKeyCallback ssh.HostKeyCallback
	// Timeout bounds TCP connect plus handshake. Zero: DefaultDialTimeout.
	Timeout time.Duration
	// KeepAlive is the interval of keepalive requests to the server; a
	// connection whose server does not answer within it is closed. Zero:
	// DefaultKeepAlive. Negative: none.
	KeepAlive time.Duration
	// Ciphers in preference order. Nil: DefaultCiphers.
	Ciphers []string
	// Logger for connection events. Nil: slog.Default().
	Logger *slog.Logger
}

// Conn is one authenticated SSH connection to an agent.
type Conn struct {
	client *ssh.Client
	addr   string
	peer   Peer
	done   chan struct{}
	cancel context.CancelFunc
}

// Dial connects to the agent at addr (host:port) and authenticates both
// ways. Errors wrap ErrUnknownCA when the server's host certificate is not
// from the trusted CA and ErrUnauthorized when the server refuses our key.
func (d *Dialer) Dial(ctx context.Context, addr string) (*Conn, error) {
	cfg, err := d.clientConfig()
	if err != nil {
		return nil, err
	}
	var peer Peer
	hk := cfg.HostKeyCallback
	cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		if err := hk(host, remote, key); err != nil {
			return err
		}
		peer = hostPeer(key)
		return nil
	}
	client, err := handshake(ctx, addr, cfg, d.timeout())
	if err != nil {
		return nil, d.explain(addr, err)
	}
	ctx2, cancel := context.WithCancel(context.Background())
	c := &Conn{client: client, addr: addr, peer: peer, done: make(chan struct{}), cancel: cancel}
	go func() {
		client.Wait()
		cancel()
		close(c.done)
	}()
	if ka := d.keepAlive(); ka > 0 {
		go keepAlive(ctx2, client, ka)
	}
	return c, nil
}

func (d *Dialer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return DefaultDialTimeout
}

func (d *Dialer) keepAlive() time.Duration {
	if d.KeepAlive == 0 {
		return DefaultKeepAlive
	}
	return d.KeepAlive
}

func (d *Dialer) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

func (d *Dialer) clientConfig() (*ssh.ClientConfig, error) {
	cfg := &ssh.ClientConfig{User: d.User, Timeout: d.timeout()}
	cfg.Ciphers = d.Ciphers
	if cfg.Ciphers == nil {
		cfg.Ciphers = DefaultCiphers
	}
	switch {
	case d.Identity != nil:
		us, err := d.Identity.userSigner()
		if err != nil {
			return nil, fmt.Errorf("%w: user certificate: %w", ErrIdentity, err)
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(us)}
		if cfg.User == "" {
			cfg.User = d.Identity.Name
		}
	case d.Signer != nil || len(d.Signers) > 0:
		signers := d.Signers
		if d.Signer != nil {
			signers = []ssh.Signer{d.Signer}
		}
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signers...)}
		if cfg.User == "" {
			cfg.User = "ferry"
		}
	default:
		return nil, fmt.Errorf("%w: Dialer has no Identity and no Signer; use LoadSigner or AgentSigners", ErrConfig)
	}
	ca := d.HostCA
	if ca == nil && d.Identity != nil {
		ca = d.Identity.CA
	}
	switch {
	case ca != nil:
		cfg.HostKeyCallback = hostCertCallback(func(sig ssh.PublicKey) error {
			if keysEqual(sig, ca) {
				return nil
			}
			return fmt.Errorf("its host certificate was signed by %s, we trust the cluster CA %s",
				ssh.FingerprintSHA256(sig), ssh.FingerprintSHA256(ca))
		})
		cfg.HostKeyAlgorithms = []string{ssh.CertAlgoED25519v01}
	case d.HostKeyCallback != nil:
		cfg.HostKeyCallback = d.HostKeyCallback
	default:
		return nil, fmt.Errorf("%w: Dialer has neither HostCA nor HostKeyCallback; refusing to trust any host", ErrConfig)
	}
	return cfg, nil
}

// hostCertCallback accepts only a host certificate whose signing key
// trusted accepts, with Principal, valid now. The address is not a
// principal: agents are identified by their certificate's KeyId.
func hostCertCallback(trusted func(sig ssh.PublicKey) error) ssh.HostKeyCallback {
	return func(host string, _ net.Addr, key ssh.PublicKey) error {
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			return fmt.Errorf("%w: %s presented a plain host key %s, not a cluster certificate",
				ErrUnknownCA, host, ssh.FingerprintSHA256(key))
		}
		if cert.CertType != ssh.HostCert {
			return fmt.Errorf("%w: %s presented a user certificate as host key", ErrUnknownCA, host)
		}
		if err := trusted(cert.SignatureKey); err != nil {
			return fmt.Errorf("%w: %s (node %q): %v; is the address right, and is it in this cluster?", ErrUnknownCA, host, cert.KeyId, err)
		}
		if err := certChecker(cert.SignatureKey).CheckCert(Principal, cert); err != nil {
			return fmt.Errorf("%w: %s (node %q): %v", ErrUnknownCA, host, cert.KeyId, err)
		}
		return nil
	}
}

func hostPeer(key ssh.PublicKey) Peer {
	if cert, ok := key.(*ssh.Certificate); ok {
		return Peer{Role: RoleAgent, Name: cert.KeyId, Fingerprint: ssh.FingerprintSHA256(cert.Key)}
	}
	return Peer{Fingerprint: ssh.FingerprintSHA256(key)}
}

// hostKeyError marks an error that came from our host key callback.
type hostKeyError struct{ err error }

func (e *hostKeyError) Error() string { return e.err.Error() }
func (e *hostKeyError) Unwrap() error { return e.err }

// handshake dials addr and runs the SSH handshake, honouring ctx and
// timeout. Host key errors come back as *hostKeyError; an error after the
// host key was accepted is an authentication failure.
func handshake(ctx context.Context, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	hk := cfg.HostKeyCallback
	var hostErr error
	cfg.HostKeyCallback = func(h string, r net.Addr, k ssh.PublicKey) error {
		hostErr = hk(h, r, k)
		return hostErr
	}
	nd := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to agent at %s: %w", addr, err)
	}
	nc.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	stopped := stop()
	if err != nil {
		nc.Close()
		if !stopped || ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if hostErr != nil {
			return nil, &hostKeyError{hostErr}
		}
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// explain turns a handshake error into one that names the fix.
func (d *Dialer) explain(addr string, err error) error {
	var hk *hostKeyError
	switch {
	case errors.As(err, &hk):
		return hk.err
	case !isAuthFailure(err):
		return err
	case d.Identity != nil:
		return fmt.Errorf("%w: %s refused this agent's certificate (node %q, CA %s): the node may belong to another cluster or its certificate expired; join again with a token from `ferry cluster token`",
			ErrUnauthorized, addr, d.Identity.Name, ssh.FingerprintSHA256(d.Identity.CA))
	default:
		var fps []string
		for _, s := range append([]ssh.Signer{d.Signer}, d.Signers...) {
			if s != nil {
				fps = append(fps, ssh.FingerprintSHA256(s.PublicKey()))
			}
		}
		return fmt.Errorf("%w: %s did not accept key %s; a controller can add it with `ferry operator add --role viewer|controller KEYFILE`",
			ErrUnauthorized, addr, strings.Join(fps, ", "))
	}
}

func isAuthFailure(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}

// Peer returns the server's identity as its host key showed it.
func (c *Conn) Peer() Peer { return c.peer }

// Addr returns the address dialled.
func (c *Conn) Addr() string { return c.addr }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close closes the connection and every channel on it.
func (c *Conn) Close() error {
	c.cancel()
	return c.client.Close()
}

// broken reports whether the connection has ended.
func (c *Conn) broken() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// OpenChannel opens a channel of type typ with extra data. Errors wrap
// ErrForbidden (our role may not), ErrUnknownChannel (the server does not
// serve typ) or ErrTunnelRefused (a tunnel port not open). Any other error
// means the connection is broken.
func (c *Conn) OpenChannel(ctx context.Context, typ string, extra []byte) (*Channel, error) {
	type result struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ch, reqs, err := c.client.OpenChannel(typ, extra)
		res <- result{ch, reqs, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, c.openError(typ, r.err)
		}
		return newChannel(r.ch, r.reqs, typ, extra, c.peer, c.client.LocalAddr(), c.client.RemoteAddr()), nil
	case <-ctx.Done():
		go func() { // the open may still succeed: close what it gives
			if r := <-res; r.err == nil {
				go ssh.DiscardRequests(r.reqs)
				r.ch.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (c *Conn) openError(typ string, err error) error {
	var oe *ssh.OpenChannelError
	if !errors.As(err, &oe) {
		return fmt.Errorf("open %s channel to %s: %w", typ, c.addr, err)
	}
	sentinel := ErrForbidden
	switch {
	case typ == ChannelTunnel && (oe.Reason == ssh.Prohibited || oe.Reason == ssh.ConnectionFailed):
		sentinel = ErrTunnelRefused
	case oe.Reason == ssh.UnknownChannelType:
		sentinel = ErrUnknownChannel
	case oe.Reason == ssh.Prohibited:
		sentinel = ErrForbidden
	default:
		sentinel = errOpenRefused
	}
	return fmt.Errorf("%w: %s: %s", sentinel, c.addr, oe.Message)
}

// isOpenRefusal reports whether err is the server's answer to a channel
// open (as opposed to a broken connection).
func isOpenRefusal(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnknownChannel) ||
		errors.Is(err, ErrTunnelRefused) || errors.Is(err, errOpenRefused)
}

// errOpenRefused is a refusal without a more specific sentinel (for
// example too many channels open).
var errOpenRefused = errors.New("channel refused")
