package sshx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Channel types used by Ferry. Handlers for ChannelJoin and ChannelTunnel
// are built in; the others are registered by their users.
const (
	ChannelAPI    = "ferry-api"    // HTTP: operator API and agent-to-agent calls
	ChannelRaft   = "ferry-raft"   // raft RPCs through NewStreamLayer
	ChannelStream = "ferry-stream" // checkpoint and image streams
	ChannelTunnel = "ferry-tunnel" // TCP to a loopback port, see AllowTunnel
	ChannelJoin   = "ferry-join"   // a joining node asks for its certificates
)

// Permission extensions set at authentication; never taken from a
// certificate, always computed by the server.
const (
	extRole  = "ferry-role"
	extName  = "ferry-name"
	extFP    = "ferry-fp"
	extToken = "ferry-join-token"
)

// Authorizer maps operator keys to roles. The cluster implements it from
// raft state. OperatorRole is called during authentication, from many
// connections at once, and must not block for long; ok=false refuses the
// key. role must be RoleController or RoleViewer.
type Authorizer interface {
	OperatorRole(fingerprint string) (role string, name string, ok bool)
}

// JoinHandler admits new agents. CheckToken is called while a joining node
// authenticates (with the token as its SSH password) and decides whether it
// may open the join channel; Join is called once it has sent its key and
// name, and returns the certificates. Both must compare secrets in constant
// time and may be called concurrently. CAJoinHandler is the usual
// implementation.
type JoinHandler interface {
	CheckToken(token string) error
	Join(token string, pub ssh.PublicKey, nodeName string) (*JoinGrant, error)
}

// ChannelHandler serves one accepted channel. ctx is cancelled when the SSH
// connection ends or the server stops. The server closes ch when the
// handler returns.
type ChannelHandler func(ctx context.Context, ch *Channel)

// ServerConfig configures a Server. Zero durations and counts take the
// defaults documented on each field.
type ServerConfig struct {
	// Identity is the agent's key and certificates. Required.
	Identity *Identity
	// Authorizer decides operator keys. Nil: no operator key is accepted.
	Authorizer Authorizer
	// JoinHandler admits new agents. Nil: joins are refused.
	JoinHandler JoinHandler
	// Logger receives refusals and connection errors. Nil: slog.Default().
	Logger *slog.Logger
	// MaxChannels bounds the channels open at once on one connection;
	// further opens are refused with ssh.ResourceShortage. Zero: 1024.
	MaxChannels int
	// HandshakeTimeout bounds the SSH handshake and authentication.
	// Zero: 10s.
	HandshakeTimeout time.Duration
	// KeepAlive is the interval of keepalive@openssh.com requests to each
	// client; a client that does not answer within it is disconnected.
	// Zero: DefaultKeepAlive. Negative: no keepalives.
	KeepAlive time.Duration
	// TunnelRoles may open ChannelTunnel. Nil: only RoleAgent.
	TunnelRoles []string
	// Ciphers in preference order. Nil: DefaultCiphers.
	Ciphers []string
}

// DefaultKeepAlive is the default keepalive interval for servers and dialers.
const DefaultKeepAlive = 15 * time.Second

// DefaultCiphers puts the faster AEAD first. AES-128-GCM beats
// ChaCha20-Poly1305 on CPUs with AES instructions (see BenchmarkCipher:
// on the development machine ~2x); chacha20 stays as the fallback.
var DefaultCiphers = []string{ssh.CipherAES128GCM, ssh.CipherChaCha20Poly1305}

// DefaultServerConfig returns a configuration with every default filled in;
// set Identity (and usually Authorizer and JoinHandler) before use.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Logger:           slog.Default(),
		MaxChannels:      1024,
		HandshakeTimeout: 10 * time.Second,
		KeepAlive:        DefaultKeepAlive,
		TunnelRoles:      []string{RoleAgent},
		Ciphers:          slices.Clone(DefaultCiphers),
	}
}

// withDefaults returns c with zero fields replaced by defaults.
func (c ServerConfig) withDefaults() ServerConfig {
	d := DefaultServerConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.MaxChannels == 0 {
		c.MaxChannels = d.MaxChannels
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = d.KeepAlive
	}
	if c.TunnelRoles == nil {
		c.TunnelRoles = d.TunnelRoles
	}
	if c.Ciphers == nil {
		c.Ciphers = d.Ciphers
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c ServerConfig) Validate() error {
	c = c.withDefaults()
	if c.Identity == nil {
		return fmt.Errorf("%w: ServerConfig.Identity is nil; load the agent identity first", ErrConfig)
	}
	if err := c.Identity.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.MaxChannels < 0 {
		return fmt.Errorf("%w: MaxChannels is %d, want > 0", ErrConfig, c.MaxChannels)
	}
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("%w: HandshakeTimeout is %v, want > 0", ErrConfig, c.HandshakeTimeout)
	}
	if c.KeepAlive > 0 && c.KeepAlive < c.HandshakeTimeout/10 {
		return fmt.Errorf("%w: KeepAlive %v is under a tenth of HandshakeTimeout %v", ErrConfig, c.KeepAlive, c.HandshakeTimeout)
	}
	for _, r := range c.TunnelRoles {
		if r == RoleJoining {
			return fmt.Errorf("%w: TunnelRoles %v includes %q", ErrConfig, c.TunnelRoles, RoleJoining)
		}
	}
	return nil
}

// route is a registered channel type. Exactly one of h and raw is set; raw
// routes accept or reject the channel themselves.
type route struct {
	roles []string
	h     ChannelHandler
	raw   func(ctx context.Context, sc *ssh.ServerConn, p Peer, nc ssh.NewChannel)
	owner any // the listener that registered it, for unregistering
}

// Server is an agent's SSH endpoint. Register handlers with Handle,
// HTTPListener or NewStreamLayer (before or while serving), then call Serve.
// All methods are safe for concurrent use.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	sshCfg *ssh.ServerConfig
	caFP   string

	mu       sync.Mutex
	routes   map[string]route
	tunnels  map[int]int // port -> number of AllowTunnel holders
	conns    map[*ssh.ServerConn]Peer
	closed   bool
	shutdown chan struct{}
	wg       sync.WaitGroup
}

// NewServer checks cfg and returns a server with the built-in join and
// tunnel handlers registered.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.Identity.Name),
		caFP:     ssh.FingerprintSHA256(cfg.Identity.CA),
		routes:   map[string]route{},
		tunnels:  map[int]int{},
		conns:    map[*ssh.ServerConn]Peer{},
		shutdown: make(chan struct{}),
	}
	host, err := cfg.Identity.hostSigner()
	if err != nil {
		return nil, fmt.Errorf("%w: host certificate: %w", ErrConfig, err)
	}
	s.sshCfg = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: cfg.Ciphers},
		MaxAuthTries:      6,
		PublicKeyCallback: s.authPublicKey,
		PasswordCallback:  s.authPassword,
		ServerVersion:     "SSH-2.0-Ferry",
	}
	s.sshCfg.AddHostKey(host)
	s.sshCfg.AddHostKey(cfg.Identity.Signer) // for operators who pin keys, not CAs
	s.routes[ChannelJoin] = route{roles: []string{RoleJoining}, raw: s.serveJoin}
	s.routes[ChannelTunnel] = route{roles: cfg.TunnelRoles, raw: s.serveTunnel}
	return s, nil
}

// Handle registers h for channels of type channelType opened by peers with
// one of roles. A later registration replaces an earlier one. Peers with
// RoleJoining can only ever open ChannelJoin, whatever roles says.
func (s *Server) Handle(channelType string, roles []string, h ChannelHandler) {
	s.handle(channelType, route{roles: slices.Clone(roles), h: h})
}

func (s *Server) handle(typ string, r route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[typ] = r
}

// unhandle removes the route for typ if owner registered it.
func (s *Server) unhandle(typ string, owner any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.routes[typ]; ok && r.owner == owner {
		delete(s.routes, typ)
	}
}

// Serve accepts connections on ln until ctx is cancelled or Close is
// called; it then closes ln and every connection it accepted, and returns
// ctx.Err() or ErrClosed. Serve may be called for several listeners.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	go func() {
		select {
		case <-s.shutdown:
			cancel()
		case <-ctx.Done():
		}
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				if s.isClosed() {
					return ErrClosed
				}
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, nc)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops every Serve call, closes all connections and waits for
// their goroutines (not for handlers that ignore ctx).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.shutdown)
	for sc := range s.conns {
		sc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Peers returns the peers connected now, one entry per connection.
func (s *Server) Peers() []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Peer, 0, len(s.conns))
	for _, p := range s.conns {
		out = append(out, p)
	}
	return out
}

// Disconnect closes every connection authenticated with the key whose
// fingerprint is given, and returns how many it closed. Call it when an
// operator key is removed: open connections keep the role they
// authenticated with until they close.
func (s *Server) Disconnect(fingerprint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sc, p := range s.conns {
		if p.Fingerprint == fingerprint {
			sc.Close()
			n++
		}
	}
	return n
}

func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		s.log.Info("ssh handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	peer := peerOf(sc.Permissions)
	if !s.track(sc, peer) {
		sc.Close()
		return
	}
	defer s.untrack(sc)
	s.log.Debug("peer connected", "remote", sc.RemoteAddr().String(), "role", peer.Role, "name", peer.Name, "fingerprint", peer.Fingerprint)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	go ssh.DiscardRequests(reqs)
	if s.cfg.KeepAlive > 0 {
		go keepAlive(ctx, sc, s.cfg.KeepAlive)
	}
	var open atomic.Int64
	for nch := range chans {
		s.dispatch(ctx, sc, peer, nch, &open)
	}
}

func (s *Server) track(sc *ssh.ServerConn, p Peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[sc] = p
	return true
}

func (s *Server) untrack(sc *ssh.ServerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, sc)
}

// dispatch checks role and limits and hands the new channel to its route.
func (s *Server) dispatch(ctx context.Context, sc *ssh.ServerConn, peer Peer, nch ssh.NewChannel, open *atomic.Int64) {
	typ := nch.ChannelType()
	s.mu.Lock()
	r, ok := s.routes[typ]
	s.mu.Unlock()
	if !ok {
		nch.Reject(ssh.UnknownChannelType, fmt.Sprintf("node %s does not serve channel type %q", s.cfg.Identity.Name, typ))
		return
	}
	if !slices.Contains(r.roles, peer.Role) || (peer.Role == RoleJoining && typ != ChannelJoin) {
		s.log.Info("channel refused", "type", typ, "role", peer.Role, "name", peer.Name, "fingerprint", peer.Fingerprint)
		nch.Reject(ssh.Prohibited, fmt.Sprintf("role %q may not open %q on node %s (allowed: %v)", peer.Role, typ, s.cfg.Identity.Name, r.roles))
		return
	}
	if open.Add(1) > int64(s.cfg.MaxChannels) {
		open.Add(-1)
		nch.Reject(ssh.ResourceShortage, fmt.Sprintf("more than %d channels open on this connection to node %s", s.cfg.MaxChannels, s.cfg.Identity.Name))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer open.Add(-1)
		if r.raw != nil {
			r.raw(ctx, sc, peer, nch)
			return
		}
		ch, reqs, err := nch.Accept()
		if err != nil {
			return
		}
		c := newChannel(ch, reqs, typ, nch.ExtraData(), peer, sc.LocalAddr(), sc.RemoteAddr())
		defer c.Close()
		r.h(ctx, c)
	}()
}

func peerOf(perms *ssh.Permissions) Peer {
	if perms == nil {
		return Peer{}
	}
	e := perms.Extensions
	return Peer{Role: e[extRole], Name: e[extName], Fingerprint: e[extFP]}
}

// keepAlive sends keepalive@openssh.com every interval and closes conn when
// a reply does not come within the interval.
func keepAlive(ctx context.Context, conn ssh.Conn, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		replied := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		timer := time.NewTimer(interval)
		select {
		case err := <-replied:
			timer.Stop()
			if err != nil {
				conn.Close()
				return
			}
		case <-timer.C:
			conn.Close()
			return
		case <-ctx.Done():
			timer.Stop()
			return
		}
	}
}
