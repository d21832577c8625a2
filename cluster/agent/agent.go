package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry/cluster"
	"github.com/ferryhq/ferry/node"
	"github.com/ferryhq/ferry/node/api"
	"github.com/ferryhq/ferry/transfer/sshx"
	"golang.org/x/crypto/ssh"
)

// Agent is one running ferry agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	node    *node.Agent
	creds   *credentials
	srv     *sshx.Server
	pool    *sshx.Pool
	store   *cluster.Store
	members *cluster.Membership
	router  *Router
	addr    string // advertised SSH address (also the raft address)

	pages       pageSums     // page tunnels' hashes, by migration
	received    receivedSet  // migration streams received, by migration
	streamLanes laneGatherer // directory streams over several lanes, gathering
	migrations  runningJobs  // migrations this agent drives as the leader
	drains      drainRuns    // drains this agent drives as the leader
	expected    expected     // containers loaded here whose placement is being moved here

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	left      chan struct{} // closed when this node has left the cluster
	leaveOnce sync.Once
}

// Start brings the agent up: node, credentials, SSH port, raft, gossip, and the API on the SSH port and on
// the root-only unix socket. On error, everything started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	actx, cancel := context.WithCancel(context.Background())
	a := &Agent{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), ctx: actx, cancel: cancel, left: make(chan struct{})}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.node, err = node.New(ctx, cfg.Node); err != nil {
		return nil, err
	}
	creds, start, err := loadOrMakeCredentials(ctx, cfg)
	first := start == startMade
	if err != nil {
		return nil, err
	}
	a.creds = creds
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (is another agent using the port? pick another with --bind)", cfg.Bind, err)
	}
	if a.addr, err = advertised(cfg.Advertise, ln.Addr()); err != nil {
		ln.Close()
		return nil, err
	}
	if err := a.startSSH(ln); err != nil {
		return nil, err
	}
	if err := a.startRaft(ctx, first); err != nil {
		return nil, err
	}
	if err := a.startGossip(first); err != nil {
		return nil, err
	}
	if start != startJoined && a.waitLeader(ctx) && start == startRestarted {
		a.fenceAtStart(ctx)
	}
	if err := a.startAPI(); err != nil {
		return nil, err
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.runFence() }()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.runSelfFence() }()
	if first && cfg.ControllerKey != "" {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.addFirstControllers() }()
	}
	a.log.Info("agent ready", "addr", a.addr, "gossip", a.members.GossipAddr(), "data_dir", cfg.DataDir)
	return a, nil
}

// waitLeader gives raft a moment to elect a leader (it takes about an election timeout) and replay its log,
// so that the agent is ready for writes and answers from a current state when it says it is ready, and
// reports whether that happened. (A joining agent does not wait: the leader adds it once its gossip arrives.)
func (a *Agent) waitLeader(ctx context.Context) bool {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	last, _ := strconv.ParseUint(a.store.Stats()["last_log_index"], 10, 64)
	leader, err := a.store.WaitLeader(wctx)
	if err == nil {
		err = a.store.WaitIndex(wctx, last) // the entries this node had before a restart are applied again
	}
	if err != nil {
		a.log.Warn("no raft leader yet, or the state is behind; writes wait for a leader (a majority of the voters must be up)", "err", err)
		return false
	}
	a.log.Info("raft leader", "leader", leader, "applied_index", a.store.AppliedIndex())
	return true
}

// advertised returns the address other agents dial: the configured one, or the bound one (which must then
// be a specific address, not 0.0.0.0).
func advertised(configured string, bound net.Addr) (string, error) {
	if configured != "" {
		return configured, nil
	}
	tcp := bound.(*net.TCPAddr)
	if tcp.IP.IsUnspecified() {
		ip, err := firstGlobalIP()
		if err != nil {
			return "", fmt.Errorf("--bind %s listens on every address; say which one other agents should dial with --advertise (%v)", bound, err)
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port)), nil
	}
	return bound.String(), nil
}

func firstGlobalIP() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			return ipn.IP, nil
		}
	}
	return nil, errors.New("no global unicast IPv4 address on this host")
}

func (a *Agent) startSSH(ln net.Listener) error {
	sc := sshx.DefaultServerConfig()
	sc.Identity, sc.Authorizer, sc.Logger = a.creds.id, operators{a}, a.log
	if a.creds.ca != nil {
		sc.JoinHandler = &sshx.CAJoinHandler{CA: a.creds.ca, Secret: a.creds.secret, Peers: a.peerAddrs, Admit: a.admit}
	}
	srv, err := sshx.NewServer(sc)
	if err != nil {
		ln.Close()
		return err
	}
	a.srv = srv
	a.pool = sshx.NewPool(&sshx.Dialer{Identity: a.creds.id, Logger: a.log})
	srv.Handle(sshx.ChannelStream, []string{sshx.RoleAgent}, a.serveStream)
	srv.Handle(channelPages, []string{sshx.RoleAgent}, a.servePages)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(a.ctx, ln); err != nil && a.ctx.Err() == nil {
			a.log.Error("SSH server stopped", "err", err)
		}
	}()
	return nil
}

func (a *Agent) startRaft(ctx context.Context, first bool) error {
	rc := cluster.DefaultConfig()
	rc.Name, rc.DataDir, rc.Logger = a.cfg.Name, filepath.Join(a.cfg.DataDir, "raft"), a.log
	rc.StreamLayer = sshx.NewStreamLayer(a.srv, a.pool, tcpAddr(a.addr))
	rc.RaftAdvertise = a.addr
	rc.Forwarder = &forwarder{pool: a.pool}
	rc.Bootstrap = first && a.cfg.BootstrapExpect <= 1
	if rc.Bootstrap {
		rc.Peers = []cluster.Peer{{Name: a.cfg.Name, RaftAddr: a.addr}}
	}
	if hb, el, lease := a.cfg.failoverTimeouts(); hb > 0 {
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = hb, el, lease
	}
	store, err := cluster.Open(ctx, rc)
	if err != nil {
		return fmt.Errorf("starting raft: %w", err)
	}
	a.store = store
	return nil
}

func tcpAddr(s string) net.Addr {
	addr, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return &net.TCPAddr{}
	}
	return addr
}

func (a *Agent) startGossip(first bool) error {
	host, portStr, _ := net.SplitHostPort(a.addr)
	port, _ := strconv.Atoi(portStr)
	gport := a.cfg.GossipPort
	if gport == 0 {
		gport = port + 1
	}
	mc := cluster.MemberConfig{Name: a.cfg.Name, BindAddr: host, BindPort: gport, Meta: a.meta, Logger: a.log}
	key, err := cluster.GossipKey(a.creds.secret)
	if err != nil {
		return err
	}
	mc.SecretKey = key
	if a.cfg.Fast {
		mc.Memberlist = fastMemberlist()
	}
	m, err := cluster.NewMembership(mc)
	if err != nil {
		return fmt.Errorf("starting gossip on %s:%d: %w", host, gport, err)
	}
	a.members = m
	a.joinGossip()
	a.store.OnLeadership(func(ctx context.Context) {
		cluster.RunReconciler(ctx, a.store, a.members, a.members.Events(), 2*time.Second)
	})
	a.store.OnLeadership(func(ctx context.Context) {
		for {
			a.recoverMigrations(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	})
	a.store.OnLeadership(a.runPeriodicSnapshots)
	a.store.OnLeadership(a.runFailover)
	a.store.OnLeadership(func(ctx context.Context) {
		for {
			a.resumeDrains(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
	})
	if first && a.cfg.BootstrapExpect > 1 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := cluster.BootstrapWhenExpected(a.ctx, a.store, a.members, a.cfg.BootstrapExpect); err != nil && a.ctx.Err() == nil {
				a.log.Error("bootstrap", "err", err)
			}
		}()
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.refreshMeta() }()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.reconnectGossip() }()
	return nil
}

// reconnectGossip joins again, every few seconds, the nodes the cluster knows that gossip does not see alive.
// After a partition longer than memberlist keeps gossiping to the dead, both sides consider the other dead
// and neither would ever contact the other again; this heals it once the link is back.
func (a *Agent) reconnectGossip() {
	tickEvery(a.ctx, 5*time.Second, func() {
		alive := map[string]bool{}
		for _, m := range a.members.Members() {
			if m.Status == cluster.StatusAlive || m.Status == cluster.StatusSuspect {
				alive[m.Name] = true
			}
		}
		var addrs []string
		for _, n := range a.store.State().NodeList() {
			if n.Name != a.cfg.Name && !alive[n.Name] && n.Status != cluster.StatusLeft && n.GossipAddr != "" {
				addrs = append(addrs, n.GossipAddr)
			}
		}
		if len(addrs) > 0 {
			if n, err := a.members.Join(addrs); err == nil && n > 0 {
				a.log.Info("gossip reconnected to nodes it had lost", "contacted", n)
			}
		}
	})
}

// joinGossip joins the gossip of the agents named by --join and of every node the raft state knows (so an
// agent restarted from its data dir finds the others again, once raft has caught up). It keeps trying in the
// background, with the addresses recomputed each time, until another member answers.
func (a *Agent) joinGossip() {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for delay := 200 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			if addrs := a.gossipSeeds(); len(addrs) > 0 {
				if n, err := a.members.Join(addrs); err == nil && n > 0 {
					a.log.Info("joined gossip", "members_contacted", n)
					return
				} else if err != nil {
					a.log.Debug("gossip join", "err", err)
				}
			} else if len(a.store.State().Nodes) > 0 {
				return // the only node the cluster knows is this one
			}
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(delay):
			}
		}
	}()
}

// gossipSeeds are the gossip addresses to join through: --join's hosts at their gossip port, and the other
// nodes of the raft state.
func (a *Agent) gossipSeeds() []string {
	var addrs []string
	for _, j := range a.cfg.Join {
		if h, p, err := net.SplitHostPort(j); err == nil {
			port, _ := strconv.Atoi(p)
			addrs = append(addrs, net.JoinHostPort(h, strconv.Itoa(port+1)))
		}
	}
	for _, n := range a.store.State().NodeList() {
		if n.Name != a.cfg.Name && n.GossipAddr != "" {
			addrs = append(addrs, n.GossipAddr)
		}
	}
	return addrs
}

// meta is this node's gossiped metadata.
func (a *Agent) meta() cluster.NodeMeta {
	in := a.node.Info()
	m := cluster.NodeMeta{Addr: a.addr, RaftAddr: a.addr, CapacityMemory: in.MemoryTotal, FreeMemory: in.MemoryFree}
	if in.CRIU != nil && in.CRIU.CheckOK {
		m.Features = cluster.FeatureList(in.CRIU.Features)
	}
	return m
}

// refreshMeta re-gossips the metadata when free memory moved by more than 64 MiB.
func (a *Agent) refreshMeta() {
	last := a.meta().FreeMemory
	tickEvery(a.ctx, 5*time.Second, func() {
		if free := a.meta().FreeMemory; abs(free-last) > 64<<20 {
			last = free
			_ = a.members.UpdateMeta(2 * time.Second)
		}
	})
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func (a *Agent) startAPI() error {
	a.router = NewRouter(a.cfg.Name, a.store, api.NewServer(a.node, a.log), a, a.token, a.log)
	a.registerInternal(a.router)
	a.registerSnapshots(a.router)
	a.registerDrain(a.router)
	a.registerLeave(a.router)
	roles := []string{sshx.RoleAgent, sshx.RoleController, sshx.RoleViewer}
	sshAPI := &http.Server{Handler: a.router, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if p, ok := sshx.PeerFromConn(c); ok {
				return WithCaller(ctx, Caller{Role: p.Role, Name: p.Name})
			}
			return ctx
		}}
	l := a.srv.HTTPListener(sshx.ChannelAPI, roles)
	sock, err := listenRootOnly(node.SocketPath(a.cfg.DataDir))
	if err != nil {
		return err
	}
	local := &http.Server{Handler: a.router, ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return WithCaller(ctx, Caller{Role: "root", Name: "root"})
		}}
	for _, s := range []struct {
		hs *http.Server
		l  net.Listener
	}{{sshAPI, l}, {local, sock}} {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			_ = s.hs.Serve(s.l)
		}()
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			<-a.ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = s.hs.Shutdown(sctx)
		}()
	}
	return nil
}

// Transport reaches other agents' APIs through the SSH pool (Peers for the router).
func (a *Agent) Transport() http.RoundTripper { return sshx.HTTPTransport(a.pool, sshx.ChannelAPI) }

func (a *Agent) token() (string, error) {
	if a.creds.ca == nil {
		return "", fmt.Errorf("%w: node %s joined the cluster and cannot admit others; ask the node that made the cluster for a token", node.ErrUnavailable, a.cfg.Name)
	}
	return sshx.NewToken(a.creds.ca.Fingerprint(), a.creds.secret), nil
}

func (a *Agent) peerAddrs() []string {
	var out []string
	for _, n := range a.store.State().NodeList() {
		out = append(out, n.Addr)
	}
	return out
}

// admit refuses a joining name that a live node of another key already uses.
func (a *Agent) admit(name string, _ ssh.PublicKey) error {
	if !node.ValidName(name) {
		return fmt.Errorf("node name %q is not valid", name)
	}
	if n, ok := a.store.State().Nodes[name]; ok && n.Status == cluster.StatusAlive {
		return fmt.Errorf("a node named %s is already alive in the cluster; pick another --name", name)
	}
	return nil
}

// fault reports whether a fault is to be injected (tests of the failure paths).
func (a *Agent) fault(name string) bool { return a.cfg.Node.Fault(name) }

// Name is the node's name; Addr its advertised SSH address.
func (a *Agent) Name() string { return a.cfg.Name }
func (a *Agent) Addr() string { return a.addr }

// Close stops the agent. Containers keep running; the node stays a member (it is not a leave).
func (a *Agent) Close() {
	a.closed.Do(func() {
		a.cancel()
		if a.members != nil {
			_ = a.members.Shutdown()
		}
		if a.store != nil {
			_ = a.store.Shutdown()
		}
		if a.srv != nil {
			_ = a.srv.Close()
		}
		if a.pool != nil {
			_ = a.pool.Close()
		}
		a.wg.Wait()
		if a.node != nil {
			_ = a.node.Close()
		}
	})
}

// tickEvery calls fn every d until ctx ends (the agent's background loops).
func tickEvery(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
