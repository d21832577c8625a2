package sshx

import "errors"

// Sentinel errors. Every error returned by this package that a caller may
// want to act on wraps one of these with %w, so callers test them with
// errors.Is; the message around it names the peer, key or port and says how
// to fix it.
var (
	// ErrUnauthorized reports that the server did not accept our key or
	// certificate (unknown operator key, agent certificate from another
	// cluster, expired certificate), or that a client offered no credentials.
	ErrUnauthorized = errors.New("not authorized")
	// ErrForbidden reports that the peer is authenticated but its role may
	// not do what it asked (a viewer opening a raft channel, a joining node
	// opening anything but the join channel).
	ErrForbidden = errors.New("forbidden")
	// ErrUnknownCA reports a host (or certificate) that was not signed by
	// the cluster CA we trust: another cluster's agent, or a man in the middle.
	ErrUnknownCA = errors.New("not signed by the cluster CA")
	// ErrJoinRefused reports a join that the cluster refused: a wrong or
	// stale token, or a node name that the cluster will not admit.
	ErrJoinRefused = errors.New("join refused")
	// ErrTunnelRefused reports a tunnel to a port that the target agent has
	// not opened with AllowTunnel, or whose local listener is gone.
	ErrTunnelRefused = errors.New("tunnel refused")
	// ErrUnknownChannel reports a channel type that the server does not serve.
	ErrUnknownChannel = errors.New("unknown channel type")
	// ErrBadToken reports a join token that cannot be parsed.
	ErrBadToken = errors.New("malformed join token")
	// ErrIdentity reports an identity (key, certificates, CA) that is
	// incomplete or inconsistent, or files that cannot be read as one.
	ErrIdentity = errors.New("invalid identity")
	// ErrEncryptedKey reports a private key file protected by a passphrase.
	ErrEncryptedKey = errors.New("private key is encrypted")
	// ErrClosed reports use of a Server, Pool, listener or stream layer
	// after Close.
	ErrClosed = errors.New("closed")
	// ErrConfig reports a configuration that Validate rejects.
	ErrConfig = errors.New("invalid configuration")
)
