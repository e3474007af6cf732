package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/wire"
)

// Several coordinators share a namespace. Each job is owned by exactly
// one of them at a time, and only its owner acts on it (publishes its
// tasks, feeds its reducers, records its end).
//
// # The lease
//
// Every coordinator broadcasts a heartbeat each beat (Config.Lease / 4)
// and hears everyone's, its own included. Time is counted in its own
// heartbeats heard back: a coordinator is dead to another once that other
// has heard four of its own heartbeats since it last heard the first one.
// A coordinator whose own messages are slow to come back (a slow
// connection, a starved process) thus suspects nobody, rather than
// everybody.
//
// A coordinator holds its lease while its newest heartbeat heard back was
// sent less than two beats ago (by its own monotonic clock). Another
// coordinator can declare it dead only three beats after that heartbeat
// was sent, so a coordinator that is paused, partitioned from the broker
// or too slow stops acting on its jobs (it drops them, see drop) a beat
// before anybody may take them over. It checks the lease before each batch
// of tasks it publishes and before recording a job's end; what remains is
// a window between that check and the publish itself, which at-least-once
// delivery covers: every outcome is decided by the first terminal event
// of a published attempt, whoever publishes it.
//
// # Who owns a job
//
// The job log decides, and every coordinator reads it in the same order.
// The spec record names the job's first owner (term 1), the coordinator
// that accepted it. When an owner is dead, a live coordinator records an
// owner record for the next term; the first record of each term wins.
// Contenders are ranked by a hash of the job and their id over the live
// coordinators, and claim two beats apart in rank order, so that a dead
// coordinator's jobs spread over the survivors and rarely get two claims.
// The winner takes the job up from the log like a restarted coordinator
// (replaying its events from its spec's position).
//
// # The API
//
// Any coordinator answers the API for any job of its namespace: for jobs
// it holds from memory; for a running job another one owns by forwarding
// to that owner's direct subjects (wire.APIAt), falling back to what the
// job log says; for a finished job from its end record, and its results
// by replaying its events (replay.go) when the owner is gone.

// beatsToDeath is how many of its own heartbeats a coordinator hears,
// after it last heard another one, before it takes that other for dead.
const beatsToDeath = 4

type member struct {
	node  string
	heard int64 // own heartbeats heard when this member was last heard
	ever  bool  // heard at all (else heard counts from when it was first named)
}

// entry is what the job log says of one job.
type entry struct {
	spec      uint64 // position of the spec record
	kind      wire.JobKind
	pace      string // the key of its function's pace (pace.go)
	owner     string
	term      int
	published bool
	queued    int   // the first attempts of tasks 0 … queued-1 are on the queue
	reducers  []int // groups whose reducer's first attempt is on its queue
	end       *wire.JobStatus
	endSeq    uint64
	ended     time.Time
	claiming  bool
	deadAt    int64 // own heartbeats heard when the owner was found dead; 0: alive
	// mine is the last term whose owner record this coordinator wrote
	// and won (0: none): a claim that won and was superseded before it
	// came back (claim) is a job this coordinator lost.
	mine int
}

type ownership struct {
	// id names this coordinator: its lease identity on the bus, and
	// its direct API subjects (wire.APIAt).
	id    string
	beat  time.Duration
	fence time.Duration

	mu      sync.Mutex
	joined  bool
	seq     uint64 // heartbeats sent
	sent    map[uint64]time.Time
	beats   int64     // own heartbeats heard back
	valid   time.Time // the lease holds until then (monotonic)
	members map[string]*member
	ledger  map[string]*entry
	pos     uint64        // job log position handled
	moved   chan struct{} // closed when pos moves
	// restarts counts the times the job log was found made again.
	restarts int
	// follower is the job log subscription's generation (refollow); stop
	// ends the current one.
	follower     int
	stopFollower context.CancelFunc
	refollowing  bool
	// followMu serialises applying records with the change of follower,
	// so that no record of a replaced subscription is applied after it.
	followMu sync.Mutex
}

func newOwnership(lease time.Duration) *ownership {
	return &ownership{
		id: nodeName(), beat: lease / beatsToDeath, fence: 2 * lease / beatsToDeath,
		sent: map[uint64]time.Time{}, members: map[string]*member{}, ledger: map[string]*entry{},
		moved: make(chan struct{}),
	}
}

// nodeName is a new coordinator id: the host's name (for people reading
// logs) and random bits, in letters, digits and "-" only (it is a subject
// token and a queue name).
func nodeName() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, h)
	if len(h) > 24 {
		h = h[:24]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	if h == "" {
		return "c-" + hex.EncodeToString(b[:])
	}
	return "c-" + h + "-" + hex.EncodeToString(b[:])
}

// ID returns the coordinator's id: the owner named in the specs it
// accepts and the owner records it writes.
func (c *Coordinator) ID() string { return c.own.id }

// beats is where the heartbeats go: a connection of their own when the
// coordinator has one (Config.Heartbeats).
func (c *Coordinator) beats() bus.Broadcast {
	if c.cfg.Heartbeats != nil {
		return c.cfg.Heartbeats
	}
	return c.bus
}

// joined reports whether the coordinator has joined its namespace.
func (c *Coordinator) joined() bool {
	c.own.mu.Lock()
	defer c.own.mu.Unlock()
	return c.own.joined
}

// leaseHeld reports whether the coordinator may act on its jobs: always
// when it has not joined a namespace (Recover), else while its lease
// holds.
func (c *Coordinator) leaseHeld() bool {
	o := c.own
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.joined || time.Now().Before(o.valid)
}

// heartbeats broadcasts this coordinator's heartbeat every beat and
// hears everyone's until the coordinator closes.
func (c *Coordinator) heartbeats(alive <-chan bus.Message) {
	o := c.own
	t := time.NewTicker(o.beat)
	defer t.Stop()
	send := func() {
		o.mu.Lock()
		o.seq++
		seq := o.seq
		o.sent[seq] = time.Now()
		delete(o.sent, seq-64)
		o.mu.Unlock()
		data, err := wire.Encode(wire.KindAlive, wire.Alive{Coordinator: o.id, Node: o.id, Seq: seq})
		if err == nil {
			err = c.beats().Notify(c.ctx, wire.AliveSubject, data)
		}
		if err != nil && c.ctx.Err() == nil {
			c.log.Debug("broadcasting the coordinator's heartbeat", "err", err)
		}
	}
	send()
	started, warned := time.Now(), false
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			send()
			c.enforceLease()
			if o.heard() == 0 && !warned && time.Since(started) > max(4*o.fence, 5*time.Second) {
				warned = true
				c.log.Error("the coordinator does not hear its own heartbeats: it cannot hold a lease, so it accepts no job and takes none over; check that its bus user may listen to the heartbeat subject (deploy/nats, deploy/rabbitmq)", "subject", wire.AliveSubject)
			}
		case m, ok := <-alive:
			if !ok {
				if c.ctx.Err() == nil {
					c.log.Error("the coordinators' heartbeat subscription closed; this coordinator will lose its lease")
				}
				alive = nil
				continue
			}
			var a wire.Alive
			if err := wire.Decode(m.Data, wire.KindAlive, &a); err != nil || !validPool(a.Coordinator) || !validPool(a.Node) {
				c.log.Warn("ignoring a malformed coordinator heartbeat", "err", err)
				continue
			}
			if a.Coordinator == o.id {
				c.heardSelf(a.Seq)
				continue
			}
			o.mu.Lock()
			mb := o.member(a.Coordinator)
			mb.heard, mb.ever, mb.node = o.beats, true, a.Node
			o.mu.Unlock()
		}
	}
}

// heard is how many of its own heartbeats the coordinator has heard
// back.
func (o *ownership) heard() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.beats
}

// member returns the member named id, counting its silence from now when
// it was not known. Called with o.mu held.
func (o *ownership) member(id string) *member {
	m := o.members[id]
	if m == nil {
		m = &member{heard: o.beats}
		o.members[id] = m
	}
	return m
}

// alive reports whether member id has been heard lately. Called with o.mu
// held.
func (o *ownership) alive(id string) bool {
	if id == o.id {
		return true
	}
	m := o.member(id)
	return o.beats-m.heard < beatsToDeath
}

// heardSelf counts one of the coordinator's own heartbeats heard back:
// the lease is renewed to two beats after it was sent, and the count is
// the clock by which other coordinators are found dead.
func (c *Coordinator) heardSelf(seq uint64) {
	o := c.own
	o.mu.Lock()
	o.beats++
	if at, ok := o.sent[seq]; ok {
		if v := at.Add(o.fence); v.After(o.valid) {
			o.valid = v
		}
	}
	o.mu.Unlock()
	c.sweep()
}

// restartedLog handles a job log record at position seq: one below the
// position handled means that the log was made again, its positions
// starting anew — the broker came back without its store (memory
// storage, a volume not kept), and the bus reads the new log from its
// start (bus/natsbus). The jobs of the old log are lost with their tasks
// and events: the ledger forgets them, and those this coordinator holds
// fail with a message that says why, instead of waiting for ever.
func (c *Coordinator) restartedLog(seq uint64) {
	o := c.own
	o.mu.Lock()
	if seq >= o.pos {
		o.mu.Unlock()
		return
	}
	lost := o.ledger
	o.ledger = map[string]*entry{}
	o.pos = 0 // record moves it to seq
	o.restarts++
	o.mu.Unlock()
	var held []*job
	for id := range lost {
		if j := c.held(id); j != nil && !j.snapshot().State.Terminal() {
			held = append(held, j)
		}
	}
	c.log.Error("the job log was made again (the broker lost its store?): the jobs it recorded are lost", "position", seq, "jobs", len(lost), "failing", len(held))
	for _, j := range held {
		go j.requestEnd(wire.StateFailed, &wire.TaskError{Kind: wire.ErrInternal, Message: "the broker lost the job's tasks and events: it came back without its store"}, -1)
	}
}

// watchStore writes a mark on the job log each time the bus finds its
// broker back without its store: the follower learns of the new log from
// the mark's position (restartedLog) at once, rather than from the next
// job submitted, and the jobs that were running fail then.
func (c *Coordinator) watchStore(lost <-chan struct{}) {
	for {
		select {
		case <-lost:
		case <-c.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		if err := c.syncLedger(ctx); err != nil && c.ctx.Err() == nil {
			c.log.Warn("reading the job log made again", "err", err)
		}
		cancel()
	}
}

// enforceLease drops every job the coordinator holds once its lease has
// run out: another coordinator may take them over from now on.
func (c *Coordinator) enforceLease() {
	if c.leaseHeld() {
		return
	}
	c.mu.Lock()
	var held []*job
	for _, j := range c.jobs {
		if j.owned() && !j.snapshot().State.Terminal() {
			held = append(held, j) // a finished job keeps its results
		}
	}
	c.mu.Unlock()
	for _, j := range held {
		c.drop(j, "the coordinator's lease ran out (it was paused or lost the broker)")
	}
}

// drop stops acting on a job without ending it: its goroutines stop, and
// another coordinator (or this one, once it holds its lease again) takes
// it up from the log.
func (c *Coordinator) drop(j *job, why string) {
	if !j.abandon() {
		return
	}
	c.mu.Lock()
	if c.jobs[j.id] == j {
		delete(c.jobs, j.id)
	}
	c.mu.Unlock()
	c.log.Warn("job dropped", "job", j.id, "reason", why)
}

// follow applies the job log to the ledger until the subscription ends.
func (c *Coordinator) follow(gen int, log <-chan bus.Message) {
	o := c.own
	for m := range log {
		o.followMu.Lock()
		o.mu.Lock()
		current := o.follower == gen
		o.mu.Unlock()
		if current {
			c.record(m)
		}
		o.followMu.Unlock()
		if !current {
			return // replaced (refollow)
		}
	}
	o.mu.Lock()
	current := o.follower == gen
	o.mu.Unlock()
	if c.ctx.Err() == nil && current {
		c.log.Error("the job log subscription closed: this coordinator no longer sees owner changes")
	}
}

// record applies one job log record to the ledger.
func (c *Coordinator) record(m bus.Message) {
	o := c.own
	c.restartedLog(m.Seq)
	defer func() {
		o.mu.Lock()
		if m.Seq > o.pos {
			o.pos = m.Seq
			close(o.moved)
			o.moved = make(chan struct{})
		}
		o.mu.Unlock()
	}()
	parts := strings.Split(m.Subject, ".")
	if len(parts) != 3 || parts[2] == "mark" {
		return
	}
	id := parts[1]
	if !c.signedByUs(m) {
		c.log.Warn("ignoring a job log record the coordinator did not sign", "job", id, "record", parts[2])
		return
	}
	var dropJob *job
	o.mu.Lock()
	e := o.ledger[id]
	switch parts[2] {
	case "spec":
		var s wire.JobSpec
		if err := wire.Decode(m.Data, wire.KindJob, &s); err != nil || s.ID != id {
			o.mu.Unlock()
			c.log.Warn("ignoring a malformed job spec on the job log", "job", id, "err", err)
			return
		}
		if e == nil { // the first record of a spec is where its job starts
			o.ledger[id] = &entry{spec: m.Seq, kind: s.Kind, pace: paceKey(s.Pool, s.Function), owner: s.Owner, term: 1}
			o.member(s.Owner)
		}
	case "owner":
		var r wire.Owner
		if err := wire.Decode(m.Data, wire.KindOwner, &r); err != nil || r.Job != id || !validPool(r.Coordinator) {
			o.mu.Unlock()
			c.log.Warn("ignoring a malformed owner record", "job", id, "err", err)
			return
		}
		if e == nil || e.end != nil || r.Term != e.term+1 {
			break // a claim that lost, or one of a job not followed
		}
		prev := e.owner
		e.owner, e.term, e.deadAt = r.Coordinator, r.Term, 0
		if r.Coordinator == o.id {
			e.mine = r.Term
		}
		o.member(r.Coordinator)
		if prev == o.id && r.Coordinator != o.id {
			dropJob = c.held(id)
		}
	case "published":
		if e != nil {
			e.published = true
		}
	case "queued":
		var q wire.Queued
		if err := wire.Decode(m.Data, wire.KindQueued, &q); err != nil || q.Job != id || q.Through < 0 {
			o.mu.Unlock()
			c.log.Warn("ignoring a malformed record of queued tasks", "job", id, "err", err)
			return
		}
		if e != nil {
			e.queued = max(e.queued, q.Through)
			e.reducers = append(e.reducers, q.Reducers...)
		}
	case "end":
		st, err := wire.DecodeEnd(m.Data, id)
		if err != nil {
			o.mu.Unlock()
			c.log.Warn("ignoring a malformed end record", "job", id, "err", err)
			return
		}
		if e != nil && e.end == nil {
			e.end, e.endSeq, e.ended = &st, m.Seq, time.Now()
			c.pace.learnEnd(e.pace, st)
			if j := c.held(id); j != nil && !j.snapshot().State.Terminal() {
				dropJob = j // ended by an owner that lost its lease as it ended it
			}
		}
	}
	o.mu.Unlock()
	if dropJob != nil {
		c.drop(dropJob, "another coordinator owns the job now")
	}
}

// held returns the job if this coordinator acts on it.
func (c *Coordinator) held(id string) *job {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.jobs[id]; j != nil && j.owned() {
		return j
	}
	return nil
}

// sweep claims the jobs whose owner is dead, in rank order, and the
// coordinator's own jobs it does not hold (dropped while its lease had run
// out).
func (c *Coordinator) sweep() {
	if !c.leaseHeld() {
		return
	}
	o := c.own
	type claim struct {
		id, prev string
		term     int
	}
	var claims []claim
	o.mu.Lock()
	if !o.joined {
		o.mu.Unlock()
		return
	}
	var live []string
	for id := range o.members {
		if id != o.id && o.alive(id) {
			live = append(live, id)
		}
	}
	live = append(live, o.id)
	for id, e := range o.ledger {
		if e.end != nil || e.claiming {
			continue
		}
		mine := e.owner == o.id
		if !mine {
			if o.alive(e.owner) {
				e.deadAt = 0
				continue
			}
			if e.deadAt == 0 {
				e.deadAt = o.beats
			}
			if o.beats-e.deadAt < int64(2*rank(id, o.id, live)) {
				continue
			}
		}
		e.claiming = true
		claims = append(claims, claim{id, e.owner, e.term})
	}
	o.mu.Unlock()
	for _, cl := range claims {
		if c.held(cl.id) != nil {
			o.mu.Lock()
			o.ledger[cl.id].claiming = false
			o.mu.Unlock()
			continue
		}
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.claim(cl.id, cl.prev, cl.term) }()
	}
}

// rank is this coordinator's place among the live ones for taking job
// id over: 0 claims first.
func rank(job, me string, live []string) int {
	score := func(m string) uint64 {
		h := fnv.New64a()
		h.Write([]byte(job))
		h.Write([]byte{0})
		h.Write([]byte(m))
		return h.Sum64()
	}
	slices.SortFunc(live, func(a, b string) int {
		sa, sb := score(a), score(b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return slices.Index(live, me)
}

// claim records an owner record for the job's next term, reads the log
// until it comes back, and takes the job up if the record won.
func (c *Coordinator) claim(id, prev string, term int) {
	o := c.own
	defer func() {
		o.mu.Lock()
		if e := o.ledger[id]; e != nil {
			e.claiming = false
		}
		o.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	data, err := wire.Encode(wire.KindOwner, wire.Owner{Job: id, Coordinator: o.id, Term: term + 1})
	var seq uint64
	if err == nil {
		m := bus.Message{Data: data}
		c.sign(&m)
		seq, err = c.bus.PublishSeq(ctx, wire.JobOwnerSubject(id), m)
	}
	if err == nil {
		err = c.readTo(ctx, seq)
	}
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("claiming a job", "job", id, "term", term+1, "err", err)
		}
		return
	}
	o.mu.Lock()
	e := o.ledger[id]
	won := o.owns(e, term+1)
	// Won, and claimed by another before this read it back: this
	// coordinator was paused or cut off in between.
	lost := e != nil && e.owner != o.id && e.mine == term+1
	var spec uint64
	var published bool
	var queued int
	var reducers []int
	if won {
		spec, published, queued, reducers = e.spec, e.published, e.queued, slices.Clone(e.reducers)
	}
	o.mu.Unlock()
	if lost {
		c.log.Warn("job dropped", "job", id, "reason", lostClaim)
	}
	if !won {
		return
	}
	if err := c.takeUp(ctx, id, spec, published, queued, reducers, prev, term+1); err != nil && c.ctx.Err() == nil {
		c.log.Warn("taking a job over", "job", id, "err", err)
		return
	}
}

// owns reports whether the ledger entry e says this coordinator owns its
// job in term and the job has not ended. o.mu is held.
func (o *ownership) owns(e *entry, term int) bool {
	return e != nil && e.owner == o.id && e.term == term && e.end == nil
}

// readTo waits until the ledger has handled the job log up to seq.
func (c *Coordinator) readTo(ctx context.Context, seq uint64) error {
	o := c.own
	for {
		o.mu.Lock()
		pos, moved := o.pos, o.moved
		o.mu.Unlock()
		if pos >= seq {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("reading the job log to position %d (at %d): %w", seq, pos, ctx.Err())
		}
	}
}

// logPoint is how far the coordinator has read the job log: the position
// handled, and how often it found the log made again.
type logPoint struct {
	pos      uint64
	restarts int
}

// logAt returns how far the coordinator has read the job log.
func (c *Coordinator) logAt() logPoint {
	o := c.own
	o.mu.Lock()
	defer o.mu.Unlock()
	return logPoint{o.pos, o.restarts}
}

// readToWritten reads the job log to position seq of a record written
// after the log was read to before. A position not beyond before is that
// of a record read already — a publish the bus deduplicated returns the
// first copy's position — when handled says so; otherwise the log was made
// again (restartedLog), its positions starting anew, and the read waits
// until the coordinator has found that and read the new log to seq.
//
// A bus whose subscriptions do not follow a stream made again by
// themselves (RabbitMQ: its offsets start again at 0, below the one the
// subscription waits for) never brings the new log's records: when no
// restart comes within refollowAfter, the coordinator reads the job log
// again from its start on a new subscription (refollow).
func (c *Coordinator) readToWritten(ctx context.Context, seq uint64, before logPoint, handled func() bool) error {
	if seq > before.pos || handled() {
		return c.readTo(ctx, seq)
	}
	o := c.own
	refollow := time.NewTimer(refollowAfter)
	defer refollow.Stop()
	for {
		o.mu.Lock()
		pos, restarts, moved := o.pos, o.restarts, o.moved
		o.mu.Unlock()
		if restarts > before.restarts && pos >= seq {
			return nil
		}
		select {
		case <-moved:
		case <-refollow.C:
			if restarts == before.restarts && !c.refollow(seq) {
				refollow.Reset(refollowAfter) // try again
			}
		case <-ctx.Done():
			return fmt.Errorf("reading the job log, made again, to position %d (at %d): %w", seq, pos, ctx.Err())
		}
	}
}

// refollowAfter is how long a coordinator that wrote a record below the
// position it had read waits for its job log subscription to find the new
// log before it subscribes again from the start.
const refollowAfter = 2 * time.Second

// refollow replaces the job log subscription with one from the log's
// first record: the bus's did not find the log made again (seen from a
// record written at position at, below the one handled). The new
// subscription's records then show the restart (restartedLog). It
// reports false when it could not subscribe (the caller tries again).
func (c *Coordinator) refollow(at uint64) bool {
	o := c.own
	o.mu.Lock()
	if o.refollowing || o.stopFollower == nil {
		o.mu.Unlock()
		return true // under way, or not following yet
	}
	o.refollowing = true
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.refollowing = false
		o.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(c.ctx)
	log, err := c.bus.Subscribe(ctx, "job.>", bus.SubscribeOptions{From: 1})
	if err != nil {
		cancel()
		c.log.Warn("reading the job log, made again, from its start", "err", err)
		return false
	}
	o.followMu.Lock()
	o.mu.Lock()
	o.follower++
	gen, stop := o.follower, o.stopFollower
	o.stopFollower = cancel
	o.mu.Unlock()
	o.followMu.Unlock()
	stop()
	c.log.Warn("the job log's subscription did not find the log made again (the broker lost its store?): reading it from its start", "written at", at)
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.follow(gen, log) }()
	return true
}

// readSpec reads a job's spec record at its position on the job log.
func (c *Coordinator) readSpec(ctx context.Context, id string, at uint64) (*wire.JobSpec, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.bus.Subscribe(ctx, wire.JobSpecSubject(id), bus.SubscribeOptions{From: at, To: at})
	if err != nil {
		return nil, err
	}
	for m := range ch {
		if m.Seq != at {
			continue
		}
		if !c.signedByUs(m) {
			return nil, errors.New("the job's spec record is not signed by the coordinators")
		}
		var s wire.JobSpec
		if err := wire.Decode(m.Data, wire.KindJob, &s); err != nil {
			return nil, err
		}
		return &s, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("no spec record at position %d of the job log", at)
}

// lostClaim is why a coordinator drops a job it claimed and lost before
// it acted on it.
const lostClaim = "another coordinator claimed it before this one took it up (this one was paused or lost the broker)"

// takeUp starts acting on a job this coordinator now owns (it won term),
// from its spec's position on the log. published says the job log
// records all its tasks as published, queued how many of the first ones
// it records, and reducers the groups whose reducers it records as
// queued. A job claimed by another coordinator meanwhile is dropped
// before it starts: the owner record that supersedes term may have come
// while the job was not yet held, when nothing could drop it.
func (c *Coordinator) takeUp(ctx context.Context, id string, from uint64, published bool, queued int, reducers []int, prev string, term int) error {
	spec, err := c.readSpec(ctx, id, from)
	if err != nil {
		return err
	}
	j, err := newJob(ctx, c, spec)
	if err != nil {
		return err
	}
	j.recovered, j.wasPublished, j.wasQueued, j.from = true, published, min(queued, j.n), from
	for _, g := range reducers {
		if g >= 0 && g < len(j.reducerQueued) {
			j.reducerQueued[g] = true // its first attempt is on the queue
		}
	}
	c.mu.Lock()
	if old := c.jobs[id]; old != nil && old.owned() {
		c.mu.Unlock()
		j.cancel()
		return nil
	}
	c.jobs[id] = j
	c.mu.Unlock()
	// Held from here on: a record that supersedes term drops it (record);
	// one that came before is seen here.
	c.own.mu.Lock()
	e := c.own.ledger[id]
	still := c.own.owns(e, term)
	c.own.mu.Unlock()
	if !still {
		why := lostClaim
		if e != nil && e.end != nil {
			why = "the job ended before this coordinator took it up"
		}
		c.drop(j, why)
		return nil
	}
	if err := j.start(); err != nil {
		c.mu.Lock()
		if c.jobs[id] == j {
			delete(c.jobs, id)
		}
		c.mu.Unlock()
		return err
	}
	if prev == "" {
		prev = "none"
	}
	c.log.Info("job taken up", "job", id, "tasks", j.n, "all published before", published, "queued before", queued, "from", from, "previous", prev)
	return nil
}

// ledgerEntry returns a copy of what the job log says of a job, and the
// direct-API node of its owner when that owner is alive and not this
// coordinator.
func (c *Coordinator) ledgerEntry(id string) (e entry, node string, ok bool) {
	o := c.own
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.joined {
		return entry{}, "", false
	}
	p := o.ledger[id]
	if p == nil {
		return entry{}, "", false
	}
	if p.owner != o.id && o.alive(p.owner) {
		node = o.members[p.owner].node
	}
	return *p, node, true
}

// reapLedger forgets ended jobs after the retention.
func (c *Coordinator) reapLedger(now time.Time) {
	o := c.own
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, e := range o.ledger {
		if e.end != nil && now.Sub(e.ended) > c.cfg.Retention {
			delete(o.ledger, id)
		}
	}
	for id, m := range o.members {
		if o.beats-m.heard > 1000 {
			delete(o.members, id)
		}
	}
}
