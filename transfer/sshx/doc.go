// Package sshx is Ferry's one network port: an SSH server per agent, and the
// client side, carrying the operator API (HTTP), agent-to-agent calls, raft,
// checkpoint streams and TCP tunnels for CRIU's page server.
//
// # Who may connect
//
//   - Agents authenticate both ways with SSH certificates signed by the
//     cluster CA (CA): each agent's ed25519 key has a host certificate (its
//     server host key) and a user certificate (presented when it dials);
//     both carry the principal "ferry-agent" and the node name as KeyId.
//     A peer whose certificate another CA signed is refused, as a server
//     and as a client. Certificates are valid for DefaultCertValidity;
//     rotation is not implemented (an expired agent joins again).
//   - Operators authenticate with a plain SSH key (LoadSigner or
//     AgentSigners); the server asks its Authorizer for the key's role,
//     RoleController or RoleViewer. Unknown keys are refused and the
//     server logs their fingerprint.
//   - A new node authenticates with a join token as its password (role
//     RoleJoining) and may open only ChannelJoin, which returns its
//     certificates (Join, JoinHandler, CAJoinHandler). Before sending the
//     token it checks that the server's host certificate was signed by the
//     CA whose fingerprint the token carries.
//
// Each channel type is registered with the roles that may open it; other
// opens are refused with ssh.Prohibited, which the client reports as
// ErrForbidden. HTTP handlers get the peer with ConnContext and
// PeerFromContext and enforce finer rules (a viewer may only GET).
//
// # Usage
//
// Agent side:
//
//	srv, err := sshx.NewServer(sshx.ServerConfig{Identity: id, Authorizer: ops, JoinHandler: jh})
//	api := &http.Server{Handler: h, ConnContext: sshx.ConnContext}
//	go api.Serve(srv.HTTPListener(sshx.ChannelAPI, []string{sshx.RoleAgent, sshx.RoleController, sshx.RoleViewer}))
//	pool := sshx.NewPool(&sshx.Dialer{Identity: id})
//	layer := sshx.NewStreamLayer(srv, pool, advertiseAddr) // a raft.StreamLayer
//	go srv.Serve(ctx, ln)
//
// Client side (operators or agents):
//
//	pool := sshx.NewPool(&sshx.Dialer{Signer: key, HostCA: caPub})
//	hc := &http.Client{Transport: sshx.HTTPTransport(pool, sshx.ChannelAPI)}
//	resp, err := hc.Get("http://10.0.0.5:7946/v1/containers")
//
// Page-server tunnel: on the target, CRIU's page server listens on
// 127.0.0.1:P and the agent calls release := srv.AllowTunnel(P) for the time
// of the migration; on the source, pool.ForwardTunnel(ctx, localLn, target, P)
// forwards the connections of the source's CRIU. Tunnels only ever reach the
// target's loopback, and only ports currently allowed.
//
// # Performance
//
// x/crypto/ssh gives each channel a fixed 2 MiB window, so one channel is
// bounded by window/RTT; large transfers should use several channels in
// parallel (see BenchmarkChannelThroughput). AES-128-GCM is preferred over
// ChaCha20-Poly1305 (DefaultCiphers) because it measured faster here.
package sshx
