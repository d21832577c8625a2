package cluster

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipKey derives the 32-byte memberlist encryption key (AES-256-GCM)
// from the cluster secret with HKDF-SHA256, so the raw secret never keys
// gossip and agents of another cluster cannot join or read it.
func GossipKey(secret []byte) ([]byte, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("cluster secret is %d bytes; it needs at least 16 (see 'ferry cluster token')", len(secret))
	}
	return hkdf.Key(sha256.New, secret, []byte("ferry-gossip"), "memberlist encryption key v1", 32)
}

// NodeMeta is what a member gossips about itself. It is encoded as compact
// JSON with short keys and must fit memberlist.MetaMaxSize (512 bytes).
type NodeMeta struct {
	Addr           string   `json:"a,omitempty"` // agent API address
	RaftAddr       string   `json:"r,omitempty"`
	CapacityMemory int64    `json:"c,omitempty"`
	FreeMemory     int64    `json:"f,omitempty"`
	Ineligible     bool     `json:"i,omitempty"` // inverted so the zero value is eligible
	Features       []string `json:"x,omitempty"` // enabled CRIU features, sorted
}

// Encode returns the metadata encoding, or an error when it does not fit in
// limit bytes.
func (m NodeMeta) Encode(limit int) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("node metadata is %d bytes, memberlist allows %d; shorten the addresses or feature names", len(b), limit)
	}
	return b, nil
}

// DecodeNodeMeta decodes metadata gossiped by a member.
func DecodeNodeMeta(b []byte) (NodeMeta, error) {
	var m NodeMeta
	if len(b) == 0 {
		return m, nil
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

// FeatureList turns a feature map into the sorted list of enabled features.
func FeatureList(f map[string]bool) []string {
	var out []string
	for k, on := range f {
		if on {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Member is one gossip member as this node sees it.
type Member struct {
	Name       string     `json:"name"`
	GossipAddr string     `json:"gossip_addr"`
	Status     NodeStatus `json:"status"`
	Meta       NodeMeta   `json:"meta"`
}

// MemberEventType says what happened to a member.
type MemberEventType int

// Member events, from memberlist's EventDelegate.
const (
	MemberJoin MemberEventType = iota
	MemberLeave
	MemberUpdate
)

// MemberEvent is one membership change.
type MemberEvent struct {
	Type   MemberEventType
	Member Member
}

// MemberConfig configures a Membership. Zero values: BindAddr "0.0.0.0",
// BindPort 0 (pick a free port), AdvertiseAddr from the bind address, Meta
// returns empty metadata, Logger is slog.Default(), Memberlist is
// memberlist.DefaultLANConfig().
type MemberConfig struct {
	Name          string
	BindAddr      string
	BindPort      int
	AdvertiseAddr string
	AdvertisePort int
	// SecretKey is the 32-byte gossip key (GossipKey). Required: gossip is
	// always encrypted and unencrypted packets are refused.
	SecretKey []byte
	// Meta is called whenever memberlist needs this node's metadata; call
	// Membership.UpdateMeta after what it returns changes.
	Meta   func() NodeMeta
	Logger *slog.Logger
	// Memberlist, if set, is the base memberlist configuration (tests:
	// DefaultLocalConfig with short timeouts); the fields above override it.
	Memberlist *memberlist.Config
}

// Membership wraps a memberlist: encrypted gossip, node metadata, join,
// leave, update events, and the status of every member seen, including the
// dead and departed ones memberlist itself stops listing.
type Membership struct {
	ml     *memberlist.Memberlist
	cfg    MemberConfig
	log    *slog.Logger
	events chan MemberEvent

	mu      sync.Mutex
	members map[string]Member // from events, including dead and left
	suspect map[string]bool   // alive members whose last probe failed

	propagate time.Duration // how long Leave keeps gossiping

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// NewMembership starts a member. It does not join anyone; call Join.
func NewMembership(cfg MemberConfig) (*Membership, error) {
	if cfg.Name == "" {
		return nil, errors.New("membership: Name is empty; give the node a name")
	}
	if len(cfg.SecretKey) != 32 {
		return nil, fmt.Errorf("membership: SecretKey is %d bytes, want 32; derive it with GossipKey", len(cfg.SecretKey))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Meta == nil {
		cfg.Meta = func() NodeMeta { return NodeMeta{} }
	}
	m := &Membership{
		cfg: cfg, log: cfg.Logger.With("node", cfg.Name),
		events: make(chan MemberEvent, 256), members: map[string]Member{},
		suspect: map[string]bool{}, stop: make(chan struct{}),
	}
	mc := cfg.Memberlist
	if mc == nil {
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr, mc.AdvertisePort = cfg.AdvertiseAddr, cfg.AdvertisePort
	mc.SecretKey = cfg.SecretKey
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = (*metaDelegate)(m)
	mc.Events = (*eventDelegate)(m)
	mc.LogOutput = nil
	mc.Logger = stdlogFor(m.log.With("component", "memberlist"))
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s:%d: %w", mc.BindAddr, mc.BindPort, err)
	}
	m.ml = ml
	m.propagate = 5 * mc.GossipInterval
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.probeLoop(mc.ProbeInterval) }()
	return m, nil
}

// Join contacts existing members (host:port) and returns how many answered.
// A member with another cluster's key does not answer.
func (m *Membership) Join(addrs []string) (int, error) {
	n, err := m.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("join %v: %w (wrong address, or an agent of another cluster?)", addrs, err)
	}
	return n, nil
}

// GossipAddr is the address this member gossips on.
func (m *Membership) GossipAddr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// UpdateMeta re-reads cfg.Meta and gossips it.
func (m *Membership) UpdateMeta(timeout time.Duration) error {
	return m.ml.UpdateNode(timeout)
}

// Events delivers membership changes. The channel is buffered; when the
// consumer falls behind, events are dropped (memberlist must not block),
// so consumers also reconcile periodically from Members.
func (m *Membership) Events() <-chan MemberEvent { return m.events }

// Members returns every member seen, sorted by name, with its status:
// alive, dead and left as memberlist's events reported them, and suspect
// while this node's own probes of an alive member fail.
//
// Why not memberlist's Members(): the *Node values it returns are modified
// by memberlist under its lock after they are returned, so reading their
// State races. Events hand over copies made under that lock.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		if mem.Status == StatusAlive && m.suspect[mem.Name] {
			mem.Status = StatusSuspect
		}
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// probeLoop pings every alive member each interval and records which do not
// answer, until memberlist's failure detector rules on them.
func (m *Membership) probeLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		for _, mem := range m.Members() {
			if mem.Name == m.cfg.Name || mem.Status == StatusDead || mem.Status == StatusLeft {
				continue
			}
			addr, err := net.ResolveUDPAddr("udp", mem.GossipAddr)
			if err != nil {
				continue
			}
			_, err = m.ml.Ping(mem.Name, addr)
			m.mu.Lock()
			if err != nil {
				m.suspect[mem.Name] = true
			} else {
				delete(m.suspect, mem.Name)
			}
			m.mu.Unlock()
		}
	}
}

// Leave announces a graceful departure, then stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	m.stopProbes()
	err := m.ml.Leave(timeout)
	// Like serf's LeavePropagateDelay: Leave returns once the message was
	// sent to someone (possibly a dead member); keep gossiping a little so
	// it reaches the live ones before the sockets close.
	time.Sleep(m.propagate)
	return errors.Join(err, m.ml.Shutdown())
}

// Shutdown stops gossip without leaving; the others will see this node
// suspect, then dead. Safe to call after Leave.
func (m *Membership) Shutdown() error {
	m.stopProbes()
	return m.ml.Shutdown()
}

func (m *Membership) stopProbes() {
	m.stopOnce.Do(func() { close(m.stop) })
	m.wg.Wait()
}

func statusOf(s memberlist.NodeStateType) NodeStatus {
	switch s {
	case memberlist.StateSuspect:
		return StatusSuspect
	case memberlist.StateDead:
		return StatusDead
	case memberlist.StateLeft:
		return StatusLeft
	}
	return StatusAlive
}

func toMember(n *memberlist.Node) Member {
	meta, _ := DecodeNodeMeta(n.Meta)
	return Member{
		Name: n.Name, GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Status: statusOf(n.State), Meta: meta,
	}
}

type metaDelegate Membership

func (d *metaDelegate) NodeMeta(limit int) []byte {
	m := (*Membership)(d)
	b, err := m.cfg.Meta().Encode(limit)
	if err != nil {
		m.log.Error("node metadata not gossiped", "err", err)
		return nil
	}
	return b
}

func (d *metaDelegate) NotifyMsg([]byte)                           {}
func (d *metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *metaDelegate) LocalState(join bool) []byte                { return nil }
func (d *metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

type eventDelegate Membership

func (d *eventDelegate) emit(t MemberEventType, n *memberlist.Node) {
	m := (*Membership)(d)
	mem := toMember(n)
	if t == MemberLeave && mem.Status == StatusAlive {
		mem.Status = StatusDead
	}
	m.mu.Lock()
	m.members[mem.Name] = mem
	if t != MemberUpdate {
		delete(m.suspect, mem.Name)
	}
	m.mu.Unlock()
	select {
	case m.events <- MemberEvent{Type: t, Member: mem}:
	default:
		m.log.Warn("membership event dropped; consumer is behind", "member", mem.Name)
	}
}

func (d *eventDelegate) NotifyJoin(n *memberlist.Node)   { d.emit(MemberJoin, n) }
func (d *eventDelegate) NotifyLeave(n *memberlist.Node)  { d.emit(MemberLeave, n) }
func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) { d.emit(MemberUpdate, n) }

// MemberSource is what the membership reconciler reads; Membership
// implements it, tests give fakes.
type MemberSource interface {
	Members() []Member
}

// ReconcileMembership makes one pass of the leader's membership loop:
// every member seen is registered as a node (or its status and metadata
// updated) in the raft state, and alive members with a raft address that
// are not in the raft configuration are joined (as voters up to MaxVoters).
// Members that left are removed from the raft configuration; dead ones stay
// (they may come back) but are marked dead. Call it on the leader only.
func ReconcileMembership(ctx context.Context, s *Store, members MemberSource) error {
	servers, err := s.Servers()
	if err != nil {
		return err
	}
	inRaft := map[string]bool{}
	for _, sv := range servers {
		inRaft[sv.Name] = true
	}
	state := s.State()
	var errs []error
	for _, mem := range members.Members() {
		if op := nodeChange(state.Nodes[mem.Name], mem); op != nil {
			if _, err := s.Apply(ctx, op); err != nil {
				errs = append(errs, fmt.Errorf("update node %s: %w", mem.Name, err))
			}
		}
		switch {
		case mem.Status == StatusAlive && !inRaft[mem.Name] && mem.Meta.RaftAddr != "":
			if _, err := s.Join(ctx, mem.Name, mem.Meta.RaftAddr); err != nil {
				errs = append(errs, err)
			}
		case mem.Status == StatusLeft && inRaft[mem.Name] && mem.Name != s.Name():
			if err := s.RemoveServer(ctx, mem.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// nodeChange returns the command that brings the state's node n in line
// with the member, or nil when nothing changed. Eligibility and maintenance
// are not the member's to say: operators set them in raft (ferry node drain,
// undrain, maintenance), and gossip must not undo that.
func nodeChange(n *Node, mem Member) Op {
	meta := mem.Meta
	features := map[string]bool{}
	for _, f := range meta.Features {
		features[f] = true
	}
	if n == nil {
		if mem.Status == StatusDead || mem.Status == StatusLeft {
			return nil // never registered; nothing to record
		}
		return &RegisterNode{Node: Node{
			Name: mem.Name, Addr: meta.Addr, RaftAddr: meta.RaftAddr, GossipAddr: mem.GossipAddr,
			Status: mem.Status, CapacityMemory: meta.CapacityMemory, FreeMemory: meta.FreeMemory,
			Features: features,
		}}
	}
	if mem.Status != StatusAlive {
		// Only liveness is trustworthy from a member that is not alive.
		if n.Status == mem.Status {
			return nil
		}
		st := mem.Status
		return &UpdateNode{Name: n.Name, Status: &st}
	}
	if n.Addr != meta.Addr || n.RaftAddr != meta.RaftAddr || n.GossipAddr != mem.GossipAddr {
		reg := &RegisterNode{Node: *n.Clone()}
		reg.Node.Addr, reg.Node.RaftAddr, reg.Node.GossipAddr = meta.Addr, meta.RaftAddr, mem.GossipAddr
		reg.Node.Status, reg.Node.CapacityMemory, reg.Node.FreeMemory = StatusAlive, meta.CapacityMemory, meta.FreeMemory
		reg.Node.Features = features
		return reg
	}
	op := &UpdateNode{Name: n.Name}
	changed := false
	if n.Status != StatusAlive {
		st := StatusAlive
		op.Status, changed = &st, true
	}
	if n.FreeMemory != meta.FreeMemory {
		op.FreeMemory, changed = &meta.FreeMemory, true
	}
	if n.CapacityMemory != meta.CapacityMemory {
		op.CapacityMemory, changed = &meta.CapacityMemory, true
	}
	if !slices.Equal(FeatureList(n.Features), meta.Features) {
		op.Features, changed = features, true
	}
	if !changed {
		return nil
	}
	return op
}

// RunReconciler runs ReconcileMembership on every membership event and
// every interval until ctx is done. Register it with Store.OnLeadership:
//
//	store.OnLeadership(func(ctx context.Context) { cluster.RunReconciler(ctx, store, ml, ml.Events(), 5*time.Second) })
func RunReconciler(ctx context.Context, s *Store, members MemberSource, events <-chan MemberEvent, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := ReconcileMembership(ctx, s, members); err != nil && ctx.Err() == nil {
			s.log.Warn("membership reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-events:
		}
	}
}

// BootstrapWhenExpected waits until expect members are alive with raft
// addresses and bootstraps raft with them (sorted by name). Every agent
// started with the same --bootstrap-expect computes the same set once the
// gossip has converged; raft accepts identical bootstraps. A node that
// already has raft state does nothing.
func BootstrapWhenExpected(ctx context.Context, s *Store, members MemberSource, expect int) error {
	peers, err := poll(ctx, s.shutdownCh, 200*time.Millisecond, func() ([]Peer, bool) {
		var ps []Peer
		for _, m := range members.Members() {
			if m.Status == StatusAlive && m.Meta.RaftAddr != "" {
				ps = append(ps, Peer{Name: m.Name, RaftAddr: m.Meta.RaftAddr})
			}
		}
		return ps, len(ps) >= expect
	})
	if err != nil {
		return fmt.Errorf("waiting for %d agents to bootstrap: %w", expect, err)
	}
	if !containsPeer(peers, s.Name()) {
		return fmt.Errorf("this node %s is not among the %d members seen; check its gossip metadata", s.Name(), len(peers))
	}
	return s.Bootstrap(peers)
}
