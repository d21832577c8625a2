package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry/node/checkpoint"
	"github.com/ferryhq/ferry/node/criu"
	"github.com/ferryhq/ferry/node/runtime"
)

// maxSpareDaemons bounds the idle lazy-pages daemons one node keeps (each is a small idle process).
const maxSpareDaemons = 8

// templateSpares is how many spares a template keeps ready from its making: clones of a template come in
// bursts (`ferry clone --count N`), and a clone that finds no spare starts its daemon while the burst's
// other restores run, which then takes a few hundred milliseconds. An idle spare is a small sleeping process
// (about 7 MB).
const templateSpares = 5

// spareWait bounds how long the creation of a template waits for its first spare (awaitSpare).
const spareWait = 10 * time.Second

// spareNice is the nice value a spare starts at: its start-up (CRIU's, mostly) gets the CPU only when
// nothing of normal priority wants it, such as the restores and first requests of the clones that just
// started; a clone that finds it still starting raises it to normal priority.
const spareNice = 19

// lazyNice is the nice value of a lazy-pages daemon (of its session: see criu.LazyPages.SetNice) once it
// copies the rest of its container's memory in the background: after the restore of a migrated container,
// after the lazy hold for a clone or a load (lowerWhenFilling). Until then it runs at the normal priority:
// the restored container waits for every page fault it serves. The copy takes a second or more of CPU for
// the 4-million-key redis's 700 MB; at normal priority five of them at once starve the clones still starting
// and the services the new clones run, and in a drain the next container's dump. The container's faults
// still get a share of the CPU.
const lazyNice = 10

// lazyStart starts (or hands over) the lazy-pages daemon for a restore whose CRIU work directory is work, and
// may hand over with it a shim parked for that restore (nil: none; the restore starts one or has its own).
// A restore with a nil lazyStart is a full one.
type lazyStart func(ctx context.Context, work string) (*criu.LazyPages, *runtime.ParkedShim, error)

// lazySpares keeps `criu lazy-pages` daemons started ahead of need for the snapshots that clones are made of,
// so that a clone does not wait for its daemon to start: every CRIU process probes the kernel when it starts
// (0.1-0.4 s, more when several start at once on a busy host), and a lazy clone runs two of them. A daemon
// serves one restore: a clone takes a spare, renames the spare's work directory to its own restore work
// directory (the daemon works in the directory it has open, so it goes on listening there) and restores
// against it. When no clone of the snapshot is starting any more, spares are started again in the background:
// as many as the most clones of that snapshot that were starting at once on this node, at least one (for a
// template, templateSpares), at most maxSpareDaemons on the node, at the lowest priority (spareNice). A
// snapshot's images are immutable while it exists, so a daemon started early
// serves the same pages as one started at the clone; a removed snapshot's spares are stopped.
//
// Methods are safe for concurrent use; prepare, drop and close do nothing on a nil *lazySpares. Spares are children of the agent; close stops them, and a new agent
// stops those a crashed one left (their pid files name them).
type lazySpares struct {
	dir string    // one work directory per spare
	crx criu.Exec // how CRIU is started
	// park starts a shim that waits for its container (runtime.ParkShim): each spare keeps one beside its
	// daemon, so that a clone does not wait for a shim's start-up either (the ferry executable's, 20-40 ms of
	// CPU). nil: none.
	park func() (*runtime.ParkedShim, error)
	log  *slog.Logger
	wg   *sync.WaitGroup
	ctx  context.Context // the agent's: ends at Close
	// quiet is how long after a burst of clones of a snapshot ended its spares are started again (zero: at
	// once). The burst's clones answer their first requests then; spares started meanwhile take the cores
	// from them (a spare is a CRIU and a shim start-up, 60-100 ms of CPU), and a low nice value does not
	// hold them back: the kernel shares the CPU between sessions first (autogroups), and every shim and
	// container runs in a session of its own.
	quiet time.Duration

	mu     sync.Mutex
	seq    int
	ready  map[string][]*spareDaemon // by snapshot ID, oldest first
	want   map[string]int            // spares to keep per snapshot
	active map[string]int            // clones of the snapshot starting now
	bursts map[string]int            // by snapshot ID: counts the bursts of clones, for refillLater
	used   map[string]time.Time      // by snapshot ID: when spares were last asked for (evictFor)
	closed bool
	// One spare starts at a time, and none while a clone starts unless that clone waits for it: CRIU's
	// start-up (through the launcher's mount namespace) contends with a restore for the kernel's mount
	// locks, which no CPU priority orders. turn is signalled whenever that may have changed.
	turn      *sync.Cond
	launching bool
	current   *spareDaemon // the spare launching, if one is
}

// wake signals every spare waiting for its turn to start.
func (s *lazySpares) wake() {
	s.mu.Lock()
	s.turn.Broadcast()
	s.mu.Unlock()
}

// awaitTurn waits until sp may start (see turn); false when the spares are closing.
func (s *lazySpares) awaitTurn(sp *spareDaemon) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed || s.ctx.Err() != nil {
			return false
		}
		starting := 0
		for _, n := range s.active {
			starting += n
		}
		if !s.launching && (starting == 0 || sp.isBoosted()) {
			s.launching, s.current = true, sp
			return true
		}
		s.turn.Wait()
	}
}

// turnDone lets the next spare start.
func (s *lazySpares) turnDone() {
	s.mu.Lock()
	s.launching, s.current = false, nil
	s.turn.Broadcast()
	s.mu.Unlock()
}

// spareDaemon is one daemon started ahead of need; done is closed once it listens (lp set) or failed (err set).
type spareDaemon struct {
	work string
	done chan struct{}
	lp   *criu.LazyPages
	shim *runtime.ParkedShim // parked for the clone that takes the spare (nil: none could be)
	err  error

	mu      sync.Mutex
	proc    *criu.LazyPages // once launched
	boosted bool            // a clone waits for it
}

// launched records the started daemon, raising its priority if a clone already waits for it.
func (sp *spareDaemon) launched(lp *criu.LazyPages) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.proc = lp
	if sp.boosted {
		_ = lp.SetNice(0)
	}
}

func (sp *spareDaemon) isBoosted() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.boosted
}

// boost gives a spare that a clone waits for the normal priority (and its turn to start): its start-up is
// then on the clone's way, as a daemon the clone started itself would be.
func (sp *spareDaemon) boost() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.boosted = true
	if sp.proc != nil {
		_ = sp.proc.SetNice(0)
	}
}

const sparePidFile = "spare.pid"

// spareStartingPidFile names a spare's daemon from its launch until it listens (then sparePidFile does): an
// agent that ends meanwhile leaves a daemon that the next one finds by it.
const spareStartingPidFile = "spare-starting.pid"

// newLazySpares keeps spares in dir. park, if not nil, parks a shim for each spare.
func newLazySpares(ctx context.Context, dir string, crx criu.Exec, park func() (*runtime.ParkedShim, error), log *slog.Logger, wg *sync.WaitGroup) *lazySpares {
	s := &lazySpares{dir: dir, crx: crx, park: park, log: log, wg: wg, ctx: ctx,
		ready: map[string][]*spareDaemon{}, want: map[string]int{}, active: map[string]int{}, bursts: map[string]int{}, used: map[string]time.Time{}}
	s.turn = sync.NewCond(&s.mu)
	context.AfterFunc(ctx, s.wake)
	s.reapLeftovers()
	return s
}

// reapLeftovers stops the spares of an agent that ended without stopping them, and removes their directories.
// A pid is killed only if that process still works in the spare's directory (so a reused pid is left alone).
func (s *lazySpares) reapLeftovers() {
	ents, _ := os.ReadDir(s.dir)
	for _, de := range ents {
		for _, f := range []string{sparePidFile, spareStartingPidFile} {
			if pid, ok := stopDaemonIn(filepath.Join(s.dir, de.Name()), f); ok {
				s.log.Info("stopped a spare lazy-pages daemon left by an earlier agent", "pid", pid)
			}
		}
	}
	_ = os.RemoveAll(s.dir)
}

// prepare makes sure at least templateSpares spares are kept for snapshot ck (a template: clones will be
// made of it).
func (s *lazySpares) prepare(ck *checkpoint.Checkpoint) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.want[ck.ID] = max(s.want[ck.ID], templateSpares)
	s.mu.Unlock()
	s.refill(ck)
}

// prepareLater is prepare for a template whose first clones start right now (a copy that arrived for them):
// its spares start once those clones' burst is over and s.quiet has passed (refillLater), not beside them.
func (s *lazySpares) prepareLater(ck *checkpoint.Checkpoint) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.want[ck.ID] = max(s.want[ck.ID], templateSpares)
	burst := s.bursts[ck.ID]
	s.mu.Unlock()
	s.refillLater(ck, burst)
}

// awaitSpare waits until the oldest spare of snapshot id listens or failed (at once if there is none), or ctx
// ends: a template is made ready to clone before its creation returns, so that its first clone does not wait
// for a daemon's start-up (60-130 ms here, more on a busy host).
func (s *lazySpares) awaitSpare(ctx context.Context, id string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	var first *spareDaemon
	if q := s.ready[id]; len(q) > 0 {
		first = q[0]
	}
	s.mu.Unlock()
	if first == nil {
		return
	}
	select {
	case <-first.done:
	case <-ctx.Done():
	}
}

// begin registers a clone of ck that starts now. It returns the clone's lazyStart, which takes a spare if
// one is there (waiting for it to listen if it is still starting; a taken spare gets the normal priority) and
// otherwise starts a daemon, and end, to be called once the clone's restore is over (whether it worked or
// not).
func (s *lazySpares) begin(ck *checkpoint.Checkpoint) (lazyStart, func()) {
	s.mu.Lock()
	s.active[ck.ID]++
	s.want[ck.ID] = max(s.want[ck.ID], s.active[ck.ID])
	s.mu.Unlock()
	start := func(ctx context.Context, work string) (*criu.LazyPages, *runtime.ParkedShim, error) {
		if lp, shim := s.take(ctx, ck.ID, work); lp != nil {
			_ = lp.SetNice(0) // from the start-up priority it had as a spare
			return lp, shim, nil
		}
		lp, err := criu.StartLazyPages(ctx, s.crx, ck.ImagesDir(), work)
		return lp, nil, err
	}
	var once sync.Once
	end := func() {
		once.Do(func() {
			s.mu.Lock()
			s.active[ck.ID]--
			idle := s.active[ck.ID] == 0
			if idle {
				s.bursts[ck.ID]++
			}
			burst := s.bursts[ck.ID]
			s.turn.Broadcast()
			s.mu.Unlock()
			if idle {
				s.refillLater(ck, burst)
			}
		})
	}
	return start, end
}

// take hands a spare of snapshot id over to a restore in work, with the shim parked beside it if there is one,
// or returns nil when there is none that works. A spare still starting is waited for, at normal priority from
// then on.
func (s *lazySpares) take(ctx context.Context, id, work string) (*criu.LazyPages, *runtime.ParkedShim) {
	for {
		s.mu.Lock()
		q := s.ready[id]
		if len(q) == 0 {
			s.mu.Unlock()
			return nil, nil
		}
		sp := q[0]
		s.ready[id] = q[1:]
		cur := s.current
		s.mu.Unlock()
		sp.boost()
		select {
		case <-sp.done:
		default:
			if cur != nil && cur != sp {
				// This clone's spare waits for its turn, which another spare (started when no clone was)
				// holds at the lowest priority, which the clones starting now would keep it from: that one
				// gets the normal priority, so that this clone does not wait behind it. (A spare that is
				// ready needs no turn: then the one starting stays low, out of the clone's way.)
				cur.boost()
			}
		}
		s.wake()
		select {
		case <-sp.done:
		case <-ctx.Done():
			go func() { <-sp.done; sp.stop() }()
			return nil, nil
		}
		if sp.err != nil || sp.lp.Exited() {
			sp.stop()
			continue
		}
		if err := os.RemoveAll(work); err == nil {
			err = os.Rename(sp.work, work)
			if err == nil {
				// Out of the spares' directory, the restore's: its pid files are no spare's any more.
				_ = os.Remove(filepath.Join(work, sparePidFile))
				_ = os.Remove(filepath.Join(work, spareStartingPidFile))
				sp.lp.Moved(work)
				if sp.shim != nil {
					sp.shim.Boost()
				}
				return sp.lp, sp.shim
			}
		}
		sp.stop()
		_ = os.MkdirAll(work, 0o700)
		return nil, nil
	}
}

// refillLater refills ck's spares once s.quiet has passed since the burst of clones numbered burst ended,
// unless another one began meanwhile (its end refills then).
func (s *lazySpares) refillLater(ck *checkpoint.Checkpoint, burst int) {
	if s.quiet <= 0 {
		s.refill(ck)
		return
	}
	time.AfterFunc(s.quiet, func() {
		s.mu.Lock()
		still := s.active[ck.ID] == 0 && s.bursts[ck.ID] == burst
		s.mu.Unlock()
		if still {
			s.refill(ck)
		}
	})
}

// refill starts spares for ck in the background until the snapshot has as many as it should.
func (s *lazySpares) refill(ck *checkpoint.Checkpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.addSpares(ck.ID, s.want[ck.ID], func(sp *spareDaemon) {
		defer close(sp.done)
		if !s.awaitTurn(sp) {
			sp.err = errors.New("the node's spares are closing")
			s.forget(ck.ID, sp)
			return
		}
		lp, err := s.launch(ck, sp)
		s.turnDone()
		if sp.lp, sp.err = lp, err; sp.err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("starting a spare lazy-pages daemon", "snapshot", ck.ID, "err", sp.err)
			}
			s.forget(ck.ID, sp)
			sp.stop() // a daemon that started but does not listen, and its directory
			return
		}
		// The spare is ready (the tests wait for this file): an agent that ends from here on leaves a daemon
		// that the next one finds by it.
		_ = os.WriteFile(filepath.Join(sp.work, sparePidFile), []byte(strconv.Itoa(sp.lp.Pid())), 0o600)
	})
}

// addSpares adds spares for snapshot id until it has n and runs start for each new one in the background.
// The node keeps at most maxSpareDaemons: beyond, spares of the snapshots cloned longest ago make room (the
// spares of a snapshot no longer cloned must not keep the next one from having any). Holds s.mu.
func (s *lazySpares) addSpares(id string, n int, start func(sp *spareDaemon)) {
	total := 0
	for _, q := range s.ready {
		total += len(q)
	}
	s.used[id] = time.Now()
	for k := len(s.ready[id]); k < n; k++ {
		if total >= maxSpareDaemons {
			if !s.evictFor(id) {
				break
			}
			total--
		}
		s.seq++
		sp := &spareDaemon{work: filepath.Join(s.dir, fmt.Sprintf("%s-%d", id, s.seq)), done: make(chan struct{})}
		s.ready[id] = append(s.ready[id], sp)
		total++
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			start(sp)
		}()
	}
}

// evictFor stops a spare of the snapshot least recently cloned (or readied) other than id, which has none of
// its clones starting, to make room for one of id's; false if there is none. Holds s.mu.
func (s *lazySpares) evictFor(id string) bool {
	victim := ""
	for other, q := range s.ready {
		if other == id || len(q) == 0 || s.active[other] > 0 {
			continue
		}
		if victim == "" || s.used[other].Before(s.used[victim]) {
			victim = other
		}
	}
	if victim == "" {
		return false
	}
	q := s.ready[victim]
	sp := q[len(q)-1]
	s.ready[victim] = q[:len(q)-1]
	s.log.Debug("stopping a spare lazy-pages daemon for another snapshot's", "snapshot", victim, "for", id)
	go func() { <-sp.done; sp.stop() }()
	return true
}

// launch starts sp's daemon and waits until it listens.
func (s *lazySpares) launch(ck *checkpoint.Checkpoint, sp *spareDaemon) (*criu.LazyPages, error) {
	if err := os.MkdirAll(sp.work, 0o700); err != nil {
		return nil, err
	}
	lp, err := criu.LaunchLazyPages(s.crx, ck.ImagesDir(), sp.work, spareNice)
	if err != nil {
		return nil, err
	}
	_ = os.WriteFile(filepath.Join(sp.work, spareStartingPidFile), []byte(strconv.Itoa(lp.Pid())), 0o600)
	sp.launched(lp)
	sp.shim = s.parkShim(true)
	if err := lp.Listening(s.ctx); err != nil {
		sp.shim.Discard() // the spare is dropped (forget): its shim is not needed
		return lp, err
	}
	return lp, nil
}

// parkShim parks a shim for a spare, or returns nil. With low, the shim starts at the lowest priority, as a
// refilled spare's daemon does (it is started from a thread at that priority, so that all its threads have it,
// and its session is lowered too: runtime.ParkedShim.LowerSession); take gives it the normal one back, and so does the shim itself when it gets its container. A spare started
// during a snapshot's copy has its shim at the normal priority, as its daemon: the copy keeps the cores busy
// and the clone comes right after it.
func (s *lazySpares) parkShim(low bool) *runtime.ParkedShim {
	if s.park == nil {
		return nil
	}
	var shim *runtime.ParkedShim
	var err error
	if low {
		inBackground(func() { shim, err = s.park() })
		if err == nil {
			shim.LowerSession(spareNice)
		}
	} else {
		shim, err = s.park()
	}
	if err != nil {
		s.log.Warn("parking a shim for a spare", "err", err)
		return nil
	}
	return shim
}

// forget removes sp from the spares of snapshot id (it failed to start).
func (s *lazySpares) forget(id string, sp *spareDaemon) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.ready[id]
	for i, x := range q {
		if x == sp {
			s.ready[id] = append(q[:i:i], q[i+1:]...)
			return
		}
	}
}

// drop stops the spares of snapshot id (it is being removed) and keeps none for it any more.
func (s *lazySpares) drop(id string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	q := s.ready[id]
	delete(s.ready, id)
	delete(s.want, id)
	delete(s.bursts, id)
	delete(s.used, id)
	s.mu.Unlock()
	for _, sp := range q {
		go func() { <-sp.done; sp.stop() }()
	}
}

// close stops every spare; call it after the agent's context has ended (spares still starting then give up).
func (s *lazySpares) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.turn.Broadcast()
	all := s.ready
	s.ready = map[string][]*spareDaemon{}
	s.mu.Unlock()
	for _, q := range all {
		for _, sp := range q {
			<-sp.done
			sp.stop()
		}
	}
}

func (sp *spareDaemon) stop() {
	sp.shim.Discard()
	if sp.lp != nil {
		sp.lp.Stop()
		_ = sp.lp.Wait(context.Background())
	}
	_ = os.RemoveAll(sp.work)
}

// arrival is a snapshot copy on its way to this node: done is closed once it was accepted (ck set) or not.
type arrival struct {
	done chan struct{}
	ck   *checkpoint.Checkpoint
}

// expect starts n spares for snapshot id while a copy of it is on its way to this node, for the clones that
// will be made of it here once it arrived: each daemon starts now, during the copy, ahead of its images
// (criu.LaunchLazyPagesAhead), so that a clone right after the copy does not wait for a daemon's start-up.
// The returned function is called once with the accepted copy, or nil if the copy was refused or failed (the
// spares are stopped then).
func (s *lazySpares) expect(id string, n int) func(*checkpoint.Checkpoint) {
	arr := &arrival{done: make(chan struct{})}
	var once sync.Once
	arrived := func(ck *checkpoint.Checkpoint) { once.Do(func() { arr.ck = ck; close(arr.done) }) }
	if s == nil {
		return arrived
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return arrived
	}
	s.addSpares(id, n, func(sp *spareDaemon) { s.startAhead(id, sp, arr) })
	return arrived
}

// startAhead starts sp's daemon before its snapshot is here and feeds it the snapshot once it arrived.
func (s *lazySpares) startAhead(id string, sp *spareDaemon, arr *arrival) {
	defer close(sp.done)
	fail := func(err error) {
		sp.err = err
		s.forget(id, sp)
		sp.stop()
	}
	lp, err := criu.LaunchLazyPagesAhead(s.crx, sp.work, 0)
	if err != nil {
		fail(err)
		return
	}
	sp.lp = lp
	sp.launched(lp)
	sp.shim = s.parkShim(false)
	_ = os.WriteFile(filepath.Join(sp.work, sparePidFile), []byte(strconv.Itoa(lp.Pid())), 0o600)
	select {
	case <-arr.done:
	case <-s.ctx.Done():
	}
	if arr.ck == nil || s.ctx.Err() != nil {
		fail(errors.New("the snapshot's copy did not arrive"))
		return
	}
	if err := lp.Feed(s.ctx, arr.ck.ImagesDir()); err != nil {
		s.log.Warn("a lazy-pages daemon started during a snapshot's copy could not take it", "snapshot", id, "err", err)
		fail(err)
		return
	}
	s.log.Info("a lazy-pages daemon started during a snapshot's copy serves it", "snapshot", id, "pid", lp.Pid())
}
