package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// Errors returned to the gateway.
var (
	ErrAlreadySubscribed = errors.New("hub: already subscribed")
	ErrNotSubscribed     = errors.New("hub: not subscribed")
	ErrTooManySubs       = errors.New("hub: too many subscriptions")
	ErrSessionGone       = errors.New("hub: session gone")
	ErrClosed            = errors.New("hub: closed")
)

// Broker is what the hub needs of the broker: node-level interest in topics.
type Broker interface {
	Subscribe(ctx context.Context, topic string) error
	Unsubscribe(ctx context.Context, topic string) error
}

// Config tunes the hub.
type Config struct {
	// Shards is the number of fan-out workers. Default: the number of CPUs.
	Shards int `koanf:"shards"`
	// LossyTopics are topic patterns whose slow subscribers lose their oldest
	// messages instead of being disconnected. A pattern ending in ".*" matches every
	// topic below that prefix. Default: none.
	LossyTopics []string `koanf:"lossy_topics"`
	// SweepInterval is how often each shard checks heartbeats and stuck sockets.
	// Default 1s.
	SweepInterval time.Duration `koanf:"sweep_interval"`
	// InboxSize bounds the messages waiting for one shard; publishers wait past it.
	// Default 65536.
	InboxSize int `koanf:"inbox_size"`
	// Maps are the maps sessions can stand on, by name, for region broadcast and
	// area-of-interest events. Default: one map, "demo", 1000 × 1000, with
	// client_move, interest and conflate on. Declaring maps replaces it.
	Maps map[string]MapConfig `koanf:"maps"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Shards <= 0 {
		c.Shards = runtime.NumCPU()
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	if c.InboxSize <= 0 {
		c.InboxSize = 65536
	}
	maps := c.Maps
	if maps == nil {
		maps = DefaultMaps()
	}
	c.Maps = make(map[string]MapConfig, len(maps))
	for name, m := range maps {
		c.Maps[name] = m.WithDefaults()
	}
	return c
}

// Hub is the node's fan-out.
type Hub struct {
	// Immutable after New.
	cfg              Config
	log              *slog.Logger
	broker           Broker
	shards           []*shard
	maps             map[string]*worldMap
	heartbeatTimeout time.Duration
	presence         *presence // nil unless EnablePresence

	// Sessions by id, split by the id's hash over locked maps: a sync.Map
	// cost ~140 bytes per entry, a plain map ~40.
	sessions [sessionParts]sessionPart
	conns    atomic.Int64

	topicsMu sync.Mutex
	topics   map[string]*topicRef // Guarded by topicsMu.

	stop chan struct{}
	wg   sync.WaitGroup
}

// topicRef counts the node's local subscribers of a topic and whether the broker
// subscription is active. Its mutex serializes broker calls for the topic.
type topicRef struct {
	mu     sync.Mutex
	count  int
	active bool
}

// New builds a hub. heartbeatTimeout is how long a session may stay silent.
func New(cfg Config, b Broker, heartbeatTimeout time.Duration, log *slog.Logger) *Hub {
	cfg = cfg.WithDefaults()
	h := &Hub{cfg: cfg, log: log, broker: b, heartbeatTimeout: heartbeatTimeout,
		topics: make(map[string]*topicRef), stop: make(chan struct{})}
	for i := range h.sessions {
		h.sessions[i].m = make(map[string]*session.Session)
	}
	h.shards = make([]*shard, cfg.Shards)
	for i := range h.shards {
		h.shards[i] = newShard(h, i)
	}
	h.maps = newMaps(h)
	return h
}

// Start runs the shard workers until Close.
func (h *Hub) Start() {
	for _, sh := range h.shards {
		h.wg.Go(sh.run)
	}
	for _, m := range h.maps {
		h.wg.Go(m.run)
	}
}

// Close stops the workers. Sessions are not disconnected; the server does that first.
func (h *Hub) Close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	for _, sh := range h.shards {
		sh.wakeUp()
	}
	h.wg.Wait()
}

func (h *Hub) shardOf(s *session.Session) *shard { return h.shards[s.Num%uint64(len(h.shards))] }

// IsLossy reports whether topic's slow subscribers lose messages instead of the connection.
func (h *Hub) IsLossy(topic string) bool {
	for _, p := range h.cfg.LossyTopics {
		if MatchTopic(p, topic) {
			return true
		}
	}
	return false
}

// MatchTopic reports whether topic matches pattern: exactly, "*" for any topic, or
// a pattern "a.b.*" for every topic under "a.b.".
func MatchTopic(pattern, topic string) bool {
	if pattern == "*" || pattern == topic {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok && strings.HasSuffix(prefix, ".") {
		return strings.HasPrefix(topic, prefix) && len(topic) > len(prefix)
	}
	return false
}

// Add registers a connected session.
func (h *Hub) Add(s *session.Session) {
	p := h.sessionPart(s.ID)
	p.mu.Lock()
	p.m[s.ID] = s
	p.mu.Unlock()
	h.conns.Add(1)
	h.shardOf(s).command(func(sh *shard) { sh.add(s) })
}

// Remove forgets a session whose connection closed. Idempotent.
func (h *Hub) Remove(s *session.Session) {
	p := h.sessionPart(s.ID)
	p.mu.Lock()
	_, loaded := p.m[s.ID]
	delete(p.m, s.ID)
	p.mu.Unlock()
	if loaded {
		h.conns.Add(-1)
	}
	h.shardOf(s).command(func(sh *shard) { sh.remove(s) })
}

// Session finds a local session by id.
func (h *Hub) Session(id string) (*session.Session, bool) {
	p := h.sessionPart(id)
	p.mu.RLock()
	s, ok := p.m[id]
	p.mu.RUnlock()
	return s, ok
}

// sessionParts splits the session index so that connects on every event loop
// rarely wait for one another.
const sessionParts = 64

type sessionPart struct {
	mu sync.RWMutex
	m  map[string]*session.Session
	_  [32]byte // one part per cache line
}

func (h *Hub) sessionPart(id string) *sessionPart {
	// FNV-1a: ids are random already; any spread will do.
	x := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		x = (x ^ uint32(id[i])) * 16777619
	}
	return &h.sessions[x%sessionParts]
}

// Connections is the number of sessions on this node.
func (h *Hub) Connections() int64 { return h.conns.Load() }

// Topics is the number of topics with local subscribers.
func (h *Hub) Topics() int {
	h.topicsMu.Lock()
	defer h.topicsMu.Unlock()
	return len(h.topics)
}

// Subscribe registers s on topic in the recovering state: live messages are held
// until CompleteSubscribe. It makes sure the broker delivers topic to this node
// before returning, so the history read that follows cannot miss anything.
func (h *Hub) Subscribe(ctx context.Context, s *session.Session, topic string) error {
	if err := h.retain(ctx, topic); err != nil {
		return err
	}
	lossy := h.IsLossy(topic)
	sh := h.shardOf(s)
	err := sh.call(ctx, func(sh *shard) error { return sh.subscribe(s, topic, lossy) })
	if err != nil {
		h.release(topic)
		if ctx.Err() != nil {
			// The worker may still run the subscribe after the caller gave up;
			// undo it then, or the session would hold a subscription that never
			// completes and that no topic reference accounts for.
			sh.command(func(sh *shard) {
				if sub := s.Subs.Get(topic); sub != nil && sub.Recovering {
					_ = sh.unsubscribe(s, topic)
				}
			})
		}
	}
	return err
}

// CompleteSubscribe queues ack, then replay, then the live messages held since
// Subscribe that are newer than both; start is the offset the client already has.
func (h *Hub) CompleteSubscribe(s *session.Session, topic string, ack *session.Frame, replay []*session.Frame, start uint64, epoch string) {
	h.shardOf(s).command(func(sh *shard) { sh.completeSubscribe(s, topic, ack, replay, start, epoch) })
}

// Unsubscribe removes s from topic.
func (h *Hub) Unsubscribe(ctx context.Context, s *session.Session, topic string) error {
	err := h.shardOf(s).call(ctx, func(sh *shard) error { return sh.unsubscribe(s, topic) })
	if err == nil {
		h.release(topic)
	}
	return err
}

func (h *Hub) ref(topic string) *topicRef {
	h.topicsMu.Lock()
	defer h.topicsMu.Unlock()
	r, ok := h.topics[topic]
	if !ok {
		r = &topicRef{}
		h.topics[topic] = r
	}
	return r
}

func (h *Hub) retain(ctx context.Context, topic string) error {
	for {
		r := h.ref(topic)
		r.mu.Lock()
		h.topicsMu.Lock()
		stale := h.topics[topic] != r // dropped by release while we waited
		h.topicsMu.Unlock()
		if stale {
			r.mu.Unlock()
			continue
		}
		defer r.mu.Unlock()
		if !r.active {
			if err := h.broker.Subscribe(ctx, topic); err != nil {
				if r.count == 0 {
					h.drop(topic, r)
				}
				return fmt.Errorf("hub: broker subscribe %q: %w", topic, err)
			}
			r.active = true
		}
		r.count++
		return nil
	}
}

// release drops one local subscriber of topic; the last one ends the broker
// subscription. It may run on a shard worker, so the broker call is made on its own
// goroutine.
func (h *Hub) release(topic string) {
	h.topicsMu.Lock()
	r, ok := h.topics[topic]
	h.topicsMu.Unlock()
	if !ok {
		return
	}
	go func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.count--
		if r.count > 0 {
			return
		}
		if r.active {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := h.broker.Unsubscribe(ctx, topic); err != nil {
				h.log.Warn("hub: broker unsubscribe failed", "topic", topic, "err", err)
			}
			cancel()
			r.active = false
		}
		h.drop(topic, r)
	}()
}

func (h *Hub) drop(topic string, r *topicRef) {
	h.topicsMu.Lock()
	if h.topics[topic] == r {
		delete(h.topics, topic)
	}
	h.topicsMu.Unlock()
}

// Publication is a topic message to deliver to local subscribers.
func (h *Hub) Publication(topic string, f *session.Frame) {
	for _, sh := range h.shards {
		sh.deliver(item{kind: itemTopic, topic: topic, frame: f})
	}
}

// Broadcast delivers f to every session of the node.
func (h *Hub) Broadcast(f *session.Frame) {
	for _, sh := range h.shards {
		sh.deliver(item{kind: itemAll, frame: f})
	}
}

// PushUser delivers f to every local session of user.
func (h *Hub) PushUser(user string, f *session.Frame) {
	for _, sh := range h.shards {
		sh.deliver(item{kind: itemUser, target: user, frame: f})
	}
}

// PushSession delivers f to the local session id; false when it is not here.
func (h *Hub) PushSession(id string, f *session.Frame) bool {
	s, ok := h.Session(id)
	if !ok {
		return false
	}
	h.shardOf(s).deliver(item{kind: itemSession, sess: s, frame: f})
	return true
}

// Send queues a frame for one session (an acknowledgement that must stay ordered
// with its topic messages, for instance).
func (h *Hub) Send(s *session.Session, f *session.Frame) {
	h.shardOf(s).deliver(item{kind: itemSession, sess: s, frame: f})
}

// Flush asks s's shard to write what s has queued; called when its socket drains.
func (h *Hub) Flush(s *session.Session) {
	h.shardOf(s).flushLater(s)
}

// Disconnect closes s with code and reason, after anything already queued.
func (h *Hub) Disconnect(s *session.Session, code protocol.Code, reason string) {
	h.shardOf(s).command(func(sh *shard) { sh.disconnect(s, code, reason) })
}

// KickUser disconnects every local session of user.
func (h *Hub) KickUser(user string, code protocol.Code, reason string) {
	for _, sh := range h.shards {
		sh.command(func(sh *shard) {
			sh.eachOfUser(user, func(s *session.Session) { sh.disconnect(s, code, reason) })
		})
	}
}

// DisconnectAll closes every session with code and reason (used when draining).
func (h *Hub) DisconnectAll(code protocol.Code, reason string) {
	for _, sh := range h.shards {
		sh.command(func(sh *shard) {
			for s := range sh.sessions {
				sh.disconnect(s, code, reason)
			}
		})
	}
}

// Stats are the hub's counters.
type Stats struct {
	Connections  int64
	Topics       int
	Delivered    uint64 // frames queued to sessions
	SlowConsumer uint64 // sessions disconnected as slow consumers
	Dropped      uint64 // lossy frames dropped
	Conflated    uint64
}

// Stats sums the shards' counters.
func (h *Hub) Stats() Stats {
	st := Stats{Connections: h.Connections(), Topics: h.Topics()}
	for _, sh := range h.shards {
		st.Delivered += sh.delivered.Load()
		st.SlowConsumer += sh.slow.Load()
		st.Dropped += sh.dropped.Load()
		st.Conflated += sh.conflated.Load()
	}
	return st
}

// DisconnectFrame builds the disconnect envelope for code.
func DisconnectFrame(code protocol.Code, reason string) *session.Frame {
	if reason == "" {
		reason = code.String()
	}
	return session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_DISCONNECT, Code: uint32(code),
		Reason: reason, Reconnect: code.Reconnect()})
}
