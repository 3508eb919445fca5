package session

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/protocol"
)

// Conn is what a session needs of its connection; *transport.Conn satisfies it.
type Conn interface {
	Write(b []byte) error
	// Buffered is what Write accepted that the kernel has not taken yet.
	Buffered() int
	// Backlogged reports a backlog the connection will announce the end of (see
	// transport.Conn.OnDrained). A write still in progress on another goroutine can
	// make Buffered briefly non-zero without one.
	Backlogged() bool
	Close(code protocol.Code, reason string, linger time.Duration)
	Abort()
}

// Config bounds each session.
type Config struct {
	// MaxQueueBytes bounds what may wait to be sent to one client, counting both
	// Herald's queue and the socket's backlog. Past it the client is a slow
	// consumer. Default 1048576 (1 MiB).
	MaxQueueBytes int `koanf:"max_queue_bytes"`
	// WriteTimeout is how long a backlog may go without draining before the client
	// counts as a slow consumer. Default 10s.
	WriteTimeout time.Duration `koanf:"write_timeout"`
	// MaxSubscriptions per session. Default 128.
	MaxSubscriptions int `koanf:"max_subscriptions"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 128
	}
	return c
}

// Session is one connected player.
type Session struct {
	// Immutable after New.
	ID      string
	Num     uint64 // dense per-node number; picks the shard
	User    string
	Codec   protocol.Codec
	Variant int
	Conn    Conn
	cfg     Config

	// Atomic: written by the connection's reader and by the shard.
	lastSeen  atomic.Int64 // unix nanoseconds of the last frame from the client
	lastDrain atomic.Int64 // unix nanoseconds the socket backlog last drained
	closed    atomic.Bool

	// Owned by the shard worker.
	queue  []*Frame
	queued int // bytes in queue
	Subs   Subs
	Dirty  bool // queued frames since the last flush
	// Lingering: the session is on its shard's list of queues whose frames may
	// wait (Frame.Linger) and that a timer flushes.
	Lingering bool
	Removed   bool // no longer in the shard's indexes

	// Guarded by PlaceMu: the map the session stands on ("" for none), and
	// whether it left the node for good. The hub holds PlaceMu while it hands a
	// session's move to a map, so a session's moves, map changes and removal
	// reach the maps in the order they were made, whichever goroutine makes them
	// (its connection, the server API, its disconnect). Only the hub uses these.
	PlaceMu sync.Mutex
	Map     string
	Gone    bool
}

// Subs is a session's subscriptions, searched in order: sessions hold a handful
// (at most MaxSubscriptions), and a map cost ~200 bytes per idle session even
// for one. Owned by the shard worker.
type Subs []*Sub

// Get returns the subscription to topic, or nil.
func (l Subs) Get(topic string) *Sub {
	for _, sub := range l {
		if sub.Topic == topic {
			return sub
		}
	}
	return nil
}

// Add appends sub, which must be to a topic not in l.
func (l *Subs) Add(sub *Sub) { *l = append(*l, sub) }

// Remove drops the subscription to topic and returns it, or nil.
func (l *Subs) Remove(topic string) *Sub {
	for i, sub := range *l {
		if sub.Topic == topic {
			last := len(*l) - 1
			(*l)[i] = (*l)[last]
			(*l)[last] = nil
			*l = (*l)[:last]
			return sub
		}
	}
	return nil
}

// Sub is one subscription's delivery state. Owned by the shard worker.
type Sub struct {
	Topic string
	// Last is the newest offset delivered (or replayed), to drop duplicates.
	Last  uint64
	Epoch string
	// Recovering is set between the subscribe request and the history replay; live
	// messages wait in Pending meanwhile.
	Recovering bool
	Pending    []*Frame
	Lossy      bool
	// Slot is the subscription's place in its shard's list of the topic's
	// subscribers, so that leaving takes constant time.
	Slot int
}

// New creates a session.
func New(cfg Config, id string, num uint64, user string, codec protocol.Codec, variant int, conn Conn) *Session {
	s := &Session{ID: id, Num: num, User: user, Codec: codec, Variant: variant, Conn: conn,
		cfg: cfg.WithDefaults()}
	now := time.Now().UnixNano()
	s.lastSeen.Store(now)
	s.lastDrain.Store(now)
	return s
}

// Touch records activity from the client.
func (s *Session) Touch(now time.Time) { s.lastSeen.Store(now.UnixNano()) }

// LastSeen is when the client last sent anything.
func (s *Session) LastSeen() time.Time { return time.Unix(0, s.lastSeen.Load()) }

// Drained records that the socket backlog emptied.
func (s *Session) Drained(now time.Time) { s.lastDrain.Store(now.UnixNano()) }

// Closed reports whether the session was closed.
func (s *Session) Closed() bool { return s.closed.Load() }

// MarkClosed flags the session closed and reports whether this call did it.
func (s *Session) MarkClosed() bool { return s.closed.CompareAndSwap(false, true) }

// Config returns the session's limits.
func (s *Session) Config() Config { return s.cfg }
