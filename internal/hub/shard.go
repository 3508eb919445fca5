package hub

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// maxPending bounds the live messages held for one subscription while its history
// is read; a topic that outruns the history read by this much is far too busy.
const maxPending = 10000

type itemKind uint8

const (
	itemTopic itemKind = iota
	itemAll
	itemUser
	itemSession
	itemFlush
	itemCommand
)

type item struct {
	kind   itemKind
	topic  string
	target string
	frame  *session.Frame
	sess   *session.Session
	fn     func(*shard)
}

// shard is one fan-out worker and the sessions it owns.
type shard struct {
	hub *Hub
	id  int

	// The inbox is a lock-free ring. When it is full, publishers wait (that is the
	// back-pressure) while work that must not wait — commands and flushes, which
	// the event loops and the worker itself queue — spills into overflow; while
	// anything has spilled, everything spills, so each producer's order holds.
	in       *ring[item]
	spilled  atomic.Bool
	mu       sync.Mutex
	overflow []item     // Guarded by mu.
	roomy    *sync.Cond // on mu: broadcast when the worker has made room
	wake     chan struct{}

	// Owned by the worker.
	sessions map[*session.Session]struct{}
	// topics maps a topic to its subscribers here and their subscription state, so
	// fan-out reaches each recipient's position without a lookup by topic name.
	topics map[string]*subscribers
	// users lists each user's sessions here: usually one, so a slice rather
	// than a set per user.
	users   map[string][]*session.Session
	touched []*session.Session
	// lingering holds sessions whose queued frames may wait (Frame.Linger) until
	// linger fires; a frame that cannot wait moves its session to touched.
	lingering []*session.Session
	linger    *time.Timer
	scratch   []byte
	batch     []item

	// Counters, read by Stats.
	delivered atomic.Uint64
	slow      atomic.Uint64
	dropped   atomic.Uint64
	conflated atomic.Uint64
}

func newShard(h *Hub, id int) *shard {
	sh := &shard{hub: h, id: id, wake: make(chan struct{}, 1),
		sessions: make(map[*session.Session]struct{}),
		topics:   make(map[string]*subscribers),
		users:    make(map[string][]*session.Session)}
	sh.in = newRing[item](h.cfg.InboxSize)
	sh.linger = time.NewTimer(time.Hour)
	sh.linger.Stop()
	sh.roomy = sync.NewCond(&sh.mu)
	return sh
}

func (sh *shard) wakeUp() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// deliver queues a message item, waiting while the inbox is full: that is the
// back-pressure that slows publishers down to what the shards can deliver.
func (sh *shard) deliver(it item) {
	for {
		if !sh.spilled.Load() && sh.in.push(it) {
			sh.wakeUp()
			return
		}
		sh.mu.Lock()
		for sh.spilled.Load() || sh.in.len() > int(sh.in.mask) {
			select {
			case <-sh.hub.stop:
				sh.mu.Unlock()
				return
			default:
			}
			sh.roomy.Wait()
		}
		sh.mu.Unlock()
	}
}

// command queues work that must run on the worker; it never waits for room, so the
// event loop and the worker itself may call it.
func (sh *shard) command(fn func(*shard)) { sh.push(item{kind: itemCommand, fn: fn}) }

func (sh *shard) flushLater(s *session.Session) { sh.push(item{kind: itemFlush, sess: s}) }

func (sh *shard) push(it item) {
	if !sh.spilled.Load() && sh.in.push(it) {
		sh.wakeUp()
		return
	}
	sh.mu.Lock()
	sh.overflow = append(sh.overflow, it)
	sh.spilled.Store(true)
	sh.mu.Unlock()
	sh.wakeUp()
}

// call runs fn on the worker and waits for its result.
func (sh *shard) call(ctx context.Context, fn func(*shard) error) error {
	done := make(chan error, 1)
	sh.command(func(sh *shard) { done <- fn(sh) })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-sh.hub.stop:
		return ErrClosed
	}
}

func (sh *shard) run() {
	tick := time.NewTicker(sh.hub.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-sh.hub.stop:
			sh.mu.Lock()
			sh.roomy.Broadcast()
			sh.mu.Unlock()
			return
		case <-sh.wake:
			sh.drain()
		case now := <-tick.C:
			sh.sweep(now)
		case <-sh.linger.C:
			sh.flushLingering()
		}
	}
}

// flushEvery bounds the items a shard handles between two flushes. Without it a
// steady stream (position updates at 100,000/s) keeps drain from ever ending,
// so nothing is written until the stream pauses: BenchmarkWorld/10Hz measured a
// p99 delivery latency of 600 ms, and conflation scans grew with the unflushed
// queues. Bounded, batches stay large under load and latency stays short.
const flushEvery = 1024

// drain processes everything in the inbox, then flushes each touched session
// once; under a steady stream, also after every flushEvery items.
func (sh *shard) drain() {
	handled := 0 // since the last flush
	for {
		n := 0
		for n < flushEvery {
			it, ok := sh.in.pop()
			if !ok {
				break
			}
			sh.handle(&it)
			n++
		}
		if handled += n; handled >= flushEvery {
			sh.flush()
			handled = 0
		}
		if sh.spilled.Load() {
			sh.mu.Lock()
			batch := sh.overflow
			sh.overflow = sh.batch[:0]
			sh.spilled.Store(false)
			sh.roomy.Broadcast()
			sh.mu.Unlock()
			for i := range batch {
				sh.handle(&batch[i])
				batch[i] = item{}
			}
			sh.batch = batch
			continue
		}
		if n == 0 {
			break
		}
		sh.mu.Lock()
		sh.roomy.Broadcast()
		sh.mu.Unlock()
	}
	sh.flush()
}

func (sh *shard) handle(it *item) {
	switch it.kind {
	case itemTopic:
		set := sh.topics[it.topic]
		if set == nil {
			return
		}
		// A recipient disconnected on the way leaves the list at once, and the
		// last one takes its place: the index advances only past a recipient
		// still there.
		for i := 0; i < len(set.list); {
			m := set.list[i]
			sh.deliverTopic(m.s, m.sub, it)
			if i < len(set.list) && set.list[i].s == m.s {
				i++
			}
		}
	case itemAll:
		for s := range sh.sessions {
			sh.enqueue(s, it.frame)
		}
	case itemUser:
		sh.eachOfUser(it.target, func(s *session.Session) { sh.enqueue(s, it.frame) })
	case itemSession:
		if !it.sess.Removed {
			sh.enqueue(it.sess, it.frame)
		}
	case itemFlush:
		if !it.sess.Removed && !it.sess.Dirty {
			it.sess.Dirty = true
			sh.touched = append(sh.touched, it.sess)
		}
	case itemCommand:
		it.fn(sh)
	}
}

func (sh *shard) deliverTopic(s *session.Session, sub *session.Sub, it *item) {
	if sub.Recovering {
		if len(sub.Pending) >= maxPending {
			sh.slow.Add(1)
			sh.disconnect(s, protocol.DisconnectSlowConsumer, "too many messages during recovery")
			return
		}
		sub.Pending = append(sub.Pending, it.frame)
		return
	}
	fresh, gap := advance(sub, it.frame)
	if gap {
		sh.lostTrack(s, it.topic)
		return
	}
	if fresh {
		sh.enqueue(s, it.frame)
	}
}

func (sh *shard) enqueue(s *session.Session, f *session.Frame) {
	wasDirty := s.Dirty
	switch s.Enqueue(f) {
	case session.Queued:
		sh.delivered.Add(1)
	case session.Conflated:
		sh.delivered.Add(1)
		sh.conflated.Add(1)
	case session.DroppedOld:
		sh.delivered.Add(1)
		sh.dropped.Add(1)
	case session.DroppedNew:
		sh.dropped.Add(1)
	case session.SlowConsumer:
		sh.slow.Add(1)
		sh.hub.log.Info("hub: slow consumer disconnected", "session", s.ID, "user", s.User,
			"queued", s.Queued(), "backlog", s.Conn.Buffered())
		sh.disconnect(s, protocol.DisconnectSlowConsumer, "")
		return
	case session.Gone:
		return
	}
	if wasDirty || !s.Dirty {
		return
	}
	if f.Linger <= 0 {
		sh.touched = append(sh.touched, s)
		return
	}
	// The frame may wait: the session stays off touched, so the next flush
	// passes it by, unless a frame that cannot wait comes first.
	s.Dirty = false
	if !s.Lingering {
		s.Lingering = true
		if len(sh.lingering) == 0 {
			sh.linger.Reset(f.Linger)
		}
		sh.lingering = append(sh.lingering, s)
	}
}

// flushLingering writes the queues that were allowed to wait. They all started
// waiting since the timer was set, so none waited longer than its delay.
func (sh *shard) flushLingering() {
	for i, s := range sh.lingering {
		s.Lingering = false
		if !s.Removed && !s.Dirty {
			sh.write(s)
		}
		sh.lingering[i] = nil
	}
	sh.lingering = sh.lingering[:0]
}

func (sh *shard) flush() {
	for i, s := range sh.touched {
		sh.write(s)
		sh.touched[i] = nil
	}
	sh.touched = sh.touched[:0]
}

// write flushes s's queue through the shard's scratch buffer.
func (sh *shard) write(s *session.Session) {
	var err error
	sh.scratch, err = s.Flush(sh.scratch)
	if err != nil {
		sh.hub.log.Debug("hub: write failed", "session", s.ID, "err", err)
	}
}

func (sh *shard) add(s *session.Session) {
	if s.Closed() || s.Removed {
		return
	}
	sh.sessions[s] = struct{}{}
	if s.User != "" {
		if p := sh.hub.presence; p != nil {
			p.userUp(s.User)
		}
		sh.users[s.User] = append(sh.users[s.User], s)
	}
}

// eachOfUser calls fn for each of user's sessions here; fn may disconnect it.
func (sh *shard) eachOfUser(user string, fn func(*session.Session)) {
	for i := 0; i < len(sh.users[user]); {
		s := sh.users[user][i]
		fn(s)
		if list := sh.users[user]; i < len(list) && list[i] == s {
			i++
		}
	}
}

func (sh *shard) remove(s *session.Session) {
	if s.Removed {
		return
	}
	s.Removed = true
	sh.hub.unplace(s)
	_, added := sh.sessions[s]
	delete(sh.sessions, s)
	if list := sh.users[s.User]; list != nil {
		if i := slices.Index(list, s); i >= 0 {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
		}
		if len(list) == 0 {
			delete(sh.users, s.User)
		} else {
			sh.users[s.User] = list
		}
	}
	for _, sub := range s.Subs {
		sh.unindex(sub)
		sh.hub.release(sub.Topic)
	}
	if p := sh.hub.presence; p != nil && s.User != "" && added {
		for _, sub := range s.Subs {
			p.left(sub.Topic, s.User)
		}
		p.userDown(s.User)
	}
	clear(s.Subs)
	s.Subs = nil
	s.Discard()
}

// disconnect closes s: its queue is dropped, a disconnect frame is written after
// what the socket already holds, and the connection closes once that drains or the
// write timeout passes.
func (sh *shard) disconnect(s *session.Session, code protocol.Code, reason string) {
	if !s.MarkClosed() {
		return
	}
	if reason == "" {
		reason = code.String()
	}
	if code == protocol.DisconnectShutdown {
		// A draining node still delivers what it queued before the stop.
		sh.scratch, _ = s.FlushNow(sh.scratch)
	}
	s.Discard()
	_ = s.Conn.Write(DisconnectFrame(code, reason).Wire(s.Variant))
	s.Conn.Close(code, reason, s.Config().WriteTimeout)
	sh.remove(s)
}

func (sh *shard) subscribe(s *session.Session, topic string, lossy bool) error {
	if s.Removed || s.Closed() {
		return ErrSessionGone
	}
	if s.Subs.Get(topic) != nil {
		return ErrAlreadySubscribed
	}
	if len(s.Subs) >= s.Config().MaxSubscriptions {
		return ErrTooManySubs
	}
	sub := &session.Sub{Topic: topic, Recovering: true, Lossy: lossy}
	s.Subs.Add(sub)
	if p := sh.hub.presence; p != nil && s.User != "" {
		p.joined(topic, s.User)
	}
	set := sh.topics[topic]
	if set == nil {
		set = &subscribers{}
		sh.topics[topic] = set
	}
	set.add(s, sub)
	return nil
}

func (sh *shard) completeSubscribe(s *session.Session, topic string, ack *session.Frame, replay []*session.Frame, start uint64, epoch string) {
	sub := s.Subs.Get(topic)
	if sub == nil || !sub.Recovering {
		return
	}
	sub.Recovering = false
	sub.Last, sub.Epoch = start, epoch
	sh.enqueue(s, ack)
	for _, f := range replay {
		if fresh, _ := advance(sub, f); fresh {
			sh.enqueue(s, f)
		}
	}
	for _, f := range sub.Pending {
		fresh, gap := advance(sub, f)
		if gap {
			sh.lostTrack(s, topic)
			return
		}
		if fresh {
			sh.enqueue(s, f)
		}
	}
	sub.Pending = nil
}

// lostTrack disconnects s, which cannot be given topic without a gap: the
// broker skipped publications its history no longer held (Stats.Jumps of the
// Redis and NATS brokers). Delivering on would lose them silently; the client
// reconnects instead, resubscribes from the last message it has, and is told
// that recovery failed. Lossy subscriptions never get here: losing messages is
// what they asked for.
func (sh *shard) lostTrack(s *session.Session, topic string) {
	sh.hub.log.Warn("hub: topic skipped publications; disconnecting its subscriber to tell it",
		"session", s.ID, "user", s.User, "topic", topic)
	// What came before the gap is whole: deliver it, so that the client
	// resumes from there.
	sh.scratch, _ = s.FlushNow(sh.scratch)
	sh.disconnect(s, protocol.DisconnectInsufficientState, "messages of "+topic+" were lost")
}

// advance reports whether f is new to sub and moves sub's position to it. Within an
// epoch offsets only grow, so an offset already passed is a duplicate (replay and
// live delivery overlap at the seam of a recovery). A different epoch means the
// topic's history restarted at offset 1: its frames are new whatever their offset,
// and the client learns of the break from the epoch on the message. gap reports
// a frame that skips offsets of its epoch, on a topic that is not lossy: the
// brokers deliver each topic without gaps, a new epoch from offset 1, unless
// its history no longer held what they missed, and then the client must be
// told (lostTrack).
func advance(sub *session.Sub, f *session.Frame) (fresh, gap bool) {
	if f.Env != nil && f.Env.Epoch != "" && f.Env.Epoch != sub.Epoch {
		sub.Epoch, sub.Last = f.Env.Epoch, f.Offset
		return true, f.Offset > 1 && !sub.Lossy
	}
	if f.Offset <= sub.Last {
		return false, false
	}
	gap = f.Offset > sub.Last+1 && !sub.Lossy
	sub.Last = f.Offset
	return true, gap
}

func (sh *shard) unsubscribe(s *session.Session, topic string) error {
	sub := s.Subs.Remove(topic)
	if sub == nil {
		return ErrNotSubscribed
	}
	sh.unindex(sub)
	if p := sh.hub.presence; p != nil && s.User != "" {
		p.left(topic, s.User)
	}
	return nil
}

func (sh *shard) unindex(sub *session.Sub) {
	set := sh.topics[sub.Topic]
	if set == nil {
		return
	}
	set.remove(sub)
	if len(set.list) == 0 {
		delete(sh.topics, sub.Topic)
	}
}

// sweep closes sessions whose client went silent and those whose socket stopped
// draining.
func (sh *shard) sweep(now time.Time) {
	timeout := sh.hub.heartbeatTimeout
	for s := range sh.sessions {
		switch {
		case timeout > 0 && now.Sub(s.LastSeen()) > timeout:
			sh.hub.log.Info("hub: heartbeat timeout", "session", s.ID, "user", s.User,
				"silent", now.Sub(s.LastSeen()).Round(time.Millisecond))
			sh.disconnect(s, protocol.DisconnectHeartbeat, "")
		case s.Stuck(now):
			sh.slow.Add(1)
			sh.hub.log.Info("hub: write timeout, slow consumer", "session", s.ID, "user", s.User,
				"backlog", s.Conn.Buffered())
			sh.disconnect(s, protocol.DisconnectSlowConsumer, "write timeout")
		}
	}
	sh.flush()
}
