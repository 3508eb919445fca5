// Package memory is the embedded single-node broker: topic streams and their
// history live in this process. It is Herald's default; a cluster uses redis or nats.
//
// Each topic's stream has its own lock, held while its publication is handed to the
// handler, so deliveries of one topic are in offset order. A topic with no publish
// for HistoryTTL is forgotten; recreating it starts a new epoch, so a client holding
// a position in the old one learns recovery failed.
//
// Presence lives in maps under its own mutex. A node whose announcement ran
// out is dropped with its registrations the first time a call meets it.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/heraldgg/herald/internal/broker"
)

// Config tunes the memory broker.
type Config struct {
	// HistorySize is how many recent publications each topic keeps. Default 300.
	HistorySize int `koanf:"history_size"`
	// HistoryTTL is how long a topic's history lives after its last publish. Default 1h.
	HistoryTTL time.Duration `koanf:"history_ttl"`
}

// WithDefaults fills zero fields with their defaults.
func (c Config) WithDefaults() Config {
	if c.HistorySize <= 0 {
		c.HistorySize = 300
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = time.Hour
	}
	return c
}

var _ broker.Broker = (*Broker)(nil)

// Broker is the in-process broker.
type Broker struct {
	cfg  Config
	node string

	mu      sync.Mutex
	h       broker.Handler     // Guarded by mu; set by Start.
	streams map[string]*stream // Guarded by mu.
	stop    chan struct{}      // closed by Close
	done    chan struct{}      // closed when the janitor exits
	closed  bool               // Guarded by mu.

	// now is time.Now; tests of expiry may replace it before any call.
	now func() time.Time

	// pmu is never held with mu or a stream's lock: presence and streams
	// do not wait for each other.
	pmu  sync.Mutex
	pres presence // Guarded by pmu.
}

type stream struct {
	mu     sync.Mutex
	epoch  string
	offset uint64
	ring   []broker.Publication // the last HistorySize publications, oldest at head
	head   int
	size   int
	last   time.Time
}

// New returns a memory broker for the node named node.
func New(cfg Config, node string) *Broker {
	return &Broker{cfg: cfg.WithDefaults(), node: node, streams: make(map[string]*stream),
		stop: make(chan struct{}), done: make(chan struct{}), now: time.Now, pres: newPresence()}
}

// Start begins delivering to h.
func (b *Broker) Start(_ context.Context, h broker.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	b.h = h
	go b.janitor()
	return nil
}

func (b *Broker) janitor() {
	defer close(b.done)
	t := time.NewTicker(max(b.cfg.HistoryTTL/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case now := <-t.C:
			b.mu.Lock()
			for name, s := range b.streams {
				s.mu.Lock()
				if now.Sub(s.last) > b.cfg.HistoryTTL {
					delete(b.streams, name)
				}
				s.mu.Unlock()
			}
			b.mu.Unlock()
		}
	}
}

func (b *Broker) stream(topic string) (*stream, broker.Handler, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, nil, broker.ErrClosed
	}
	s, ok := b.streams[topic]
	if !ok {
		s = &stream{epoch: newEpoch(), ring: make([]broker.Publication, 0, 8), last: time.Now()}
		b.streams[topic] = s
	}
	return s, b.h, nil
}

// Publish appends to topic's history and delivers it.
func (b *Broker) Publish(ctx context.Context, topic string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := ctx.Err(); err != nil {
		return broker.Position{}, err
	}
	s, h, err := b.stream(topic)
	if err != nil {
		return broker.Position{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset++
	pub := broker.Publication{Topic: topic, Offset: s.offset, Epoch: s.epoch, Data: data, User: opts.User}
	s.append(pub, b.cfg.HistorySize)
	s.last = time.Now()
	if h != nil {
		h.HandlePublication(pub)
	}
	return broker.Position{Offset: pub.Offset, Epoch: pub.Epoch}, nil
}

func (s *stream) append(p broker.Publication, limit int) {
	if s.size < limit {
		if len(s.ring) < limit && s.head+s.size == len(s.ring) {
			s.ring = append(s.ring, p)
		} else {
			s.ring[(s.head+s.size)%len(s.ring)] = p
		}
		s.size++
		return
	}
	s.ring[s.head] = p
	s.head = (s.head + 1) % len(s.ring)
}

// History returns what topic retains after req.Since.
func (b *Broker) History(ctx context.Context, topic string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	if err := ctx.Err(); err != nil {
		return broker.HistoryResult{}, err
	}
	s, _, err := b.stream(topic)
	if err != nil {
		return broker.HistoryResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := broker.HistoryResult{Position: broker.Position{Offset: s.offset, Epoch: s.epoch}}
	if req.Since == nil {
		return res, nil
	}
	since := *req.Since
	if since.Epoch != s.epoch || since.Offset > s.offset {
		return res, nil
	}
	oldest := s.offset - uint64(s.size) + 1 // the first offset still retained
	res.Recovered = since.Offset+1 >= oldest
	limit := req.Limit
	if limit <= 0 {
		limit = s.size
	}
	for i := 0; i < s.size; i++ {
		p := s.ring[(s.head+i)%len(s.ring)]
		if p.Offset <= since.Offset {
			continue
		}
		if len(res.Publications) == limit {
			res.Recovered = false
			break
		}
		res.Publications = append(res.Publications, p)
	}
	return res, nil
}

// Subscribe is a no-op: on one node every publication reaches the handler.
func (b *Broker) Subscribe(context.Context, string) error { return nil }

// Unsubscribe is a no-op, as Subscribe.
func (b *Broker) Unsubscribe(context.Context, string) error { return nil }

// Broadcast delivers data to this node, the only one.
func (b *Broker) Broadcast(ctx context.Context, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	h, closed := b.h, b.closed
	b.mu.Unlock()
	if closed {
		return broker.ErrClosed
	}
	if h != nil {
		h.HandleControl(data)
	}
	return nil
}

// SendNode delivers data if node is this node; there is no other.
func (b *Broker) SendNode(ctx context.Context, node string, data []byte) error {
	if node != b.node {
		return broker.ErrUnavailable
	}
	return b.Broadcast(ctx, data)
}

// Close stops the janitor and refuses further calls.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.h != nil
	b.mu.Unlock()
	close(b.stop)
	if started {
		<-b.done
	}
	return nil
}

func newEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
