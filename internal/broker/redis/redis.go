package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/track"
)

var _ broker.Broker = (*Broker)(nil)

// Broker is a broker.Broker on Redis. Create it with New.
type Broker struct {
	// Immutable after New.
	cfg       Config
	opt       rueidis.ClientOption
	node      string
	log       *slog.Logger
	publish   *script
	read      *script
	ctlChan   string // Broadcast
	nodeChan  string // SendNode to this node
	probeChan string // this Broker's own probe pings
	topicChan string // prefix of every topic's channel
	ttlMillis string
	sizeArg   string
	done      chan struct{} // closed by Close
	pres      presenceScripts
	aliveKey  string        // the zset of presence ids
	reapKick  chan struct{} // cap 1: wakes the reaper

	// Set by Start, which the broker.Broker contract puts before every other call.
	client rueidis.Client
	h      broker.Handler

	closed   atomic.Bool
	probeSeq atomic.Uint64
	stats    broker.LiveCounters

	// wg counts the Pub/Sub goroutine and the reaper.
	wg sync.WaitGroup

	// annMu serializes Announce and Leave, which replace ids.
	annMu  sync.Mutex
	presMu sync.Mutex
	ids    map[string]string // Guarded by presMu: node → the id it announced through this broker

	mu sync.Mutex
	// Guarded by mu.
	started bool
	cancel  context.CancelFunc // stops the Pub/Sub goroutine
	conn    *psConn            // the Pub/Sub connection in service; nil while reconnecting
	connCh  chan struct{}      // closed and replaced whenever conn changes
	set     *track.Set         // subscribed topics; Kick wakes the Pub/Sub goroutine to read them
}

// Stats are the broker's lifetime counters: all but Conflicts. A rollback means
// Redis lost acknowledged publications (see the package doc on persistence).
type Stats = broker.Counters

// New returns a Broker for the node named node. It does no network I/O; Start
// connects. A nil logger discards logs.
func New(cfg Config, node string, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if node == "" {
		return nil, fmt.Errorf("%w: empty node name", ErrInvalidConfig)
	}
	cfg = cfg.WithDefaults()
	opt, err := rueidis.ParseURL(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: address: %w", ErrInvalidConfig, err)
	}
	opt.Dialer.Timeout = cfg.DialTimeout
	// Client-side caching is for reads of hot keys; Herald reads history rarely.
	opt.DisableCache = true
	// The Pub/Sub connection is a dedicated one, which needs a single-node
	// client (Sentinel is picked before this option is looked at).
	opt.ForceSingleClient = true
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := cfg.Prefix
	return &Broker{
		cfg:       cfg,
		opt:       opt,
		node:      node,
		log:       logger.With("component", "broker/redis", "node", node),
		publish:   newScript(publishLua),
		read:      newScript(readLua),
		ctlChan:   p + ":ctl",
		nodeChan:  p + ":node:" + node,
		probeChan: p + ":probe:" + node + ":" + newEpoch(),
		topicChan: p + ":t:",
		ttlMillis: strconv.FormatInt(max(cfg.HistoryTTL.Milliseconds(), 1), 10),
		sizeArg:   strconv.Itoa(cfg.HistorySize),
		done:      make(chan struct{}),
		pres:      newPresenceScripts(),
		aliveKey:  p + ":{cluster}:alive",
		reapKick:  make(chan struct{}, 1),
		ids:       make(map[string]string),
		connCh:    make(chan struct{}),
		set:       track.NewSet(max(2*cfg.HistorySize, 64)),
	}, nil
}

// Start connects to Redis, subscribes this node's control channels, and starts
// the goroutine that keeps the Pub/Sub connection alive. It fails with
// ErrUnavailable when Redis cannot be reached before ctx ends.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return broker.ErrClosed
	}
	if b.started {
		b.mu.Unlock()
		return errors.New("redis: Start called twice")
	}
	b.started = true
	b.set.Handler = h
	b.mu.Unlock()

	client, err := rueidis.NewClient(b.opt)
	if err != nil {
		return fmt.Errorf("redis: connect: %w: %w", broker.ErrUnavailable, err)
	}
	b.client, b.h = client, h
	c, err := b.connect(ctx)
	if err != nil {
		client.Close()
		return fmt.Errorf("redis: pubsub: %w: %w", broker.ErrUnavailable, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	b.cancel = cancel
	b.mu.Unlock()
	b.wg.Add(2)
	go b.run(runCtx, c)
	go b.reapLoop(runCtx)
	return nil
}

// Close stops delivery, waits for the broker's goroutine and closes every
// connection. Calls after the first return nil.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(b.done)
	b.mu.Lock()
	cancel := b.cancel
	b.mu.Unlock()
	if cancel != nil {
		cancel()
		b.wg.Wait()
	}
	if b.client != nil {
		b.client.Close()
	}
	return nil
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return b.stats.Snapshot()
}

// Publish runs the publish script: one round trip, pipelined with every other
// concurrent call. An error wraps ErrUnavailable; see the package doc for why
// such a publication did not take effect.
func (b *Broker) Publish(ctx context.Context, topic string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.usable(topic); err != nil {
		return broker.Position{}, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	dl, _ := ctx.Deadline()
	late := dl.Add(-lateMargin(time.Until(dl))).UnixMilli()
	// string(data) copies: a command abandoned at the deadline may still be
	// written later, and the caller may reuse data once Publish returns.
	args := []string{newEpoch(), b.ttlMillis, b.sizeArg, b.topicChan + topic,
		string(data), opts.User, strconv.FormatInt(late, 10)}
	pos, err := decodePosition(b.publish.run(ctx, b.client, b.keys(topic), args))
	if err != nil {
		return broker.Position{}, b.fail("publish", topic, err)
	}
	return pos, nil
}

// lateMargin is how long before the caller's deadline the publish script must
// have run, leaving its reply time to arrive: a quarter of the time left, at
// most 250ms.
func lateMargin(left time.Duration) time.Duration {
	return min(left/4, 250*time.Millisecond)
}

// History reads the topic's position and retained publications in one script.
// It starts the topic's epoch if the topic has none, so the position it returns
// stays valid for the publications that follow.
func (b *Broker) History(ctx context.Context, topic string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	if err := b.usable(topic); err != nil {
		return broker.HistoryResult{}, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	limit := req.Limit
	if limit <= 0 {
		limit = b.cfg.HistorySize
	}
	var since broker.Position
	if req.Since != nil {
		since = *req.Since
	}
	pos, pubs, err := decodeRead(topic, b.read.runRetryable(ctx, b.client, b.keys(topic), b.readArgs(since, limit, false)))
	if err != nil {
		return broker.HistoryResult{}, b.fail("history", topic, err)
	}
	res := broker.HistoryResult{Position: pos}
	if req.Since == nil || since.Epoch != pos.Epoch || since.Offset > pos.Offset {
		return res, nil
	}
	res.Publications = pubs
	res.Recovered = contiguous(since.Offset, pubs, pos.Offset)
	return res, nil
}

// contiguous reports that pubs are exactly the offsets after since up to last.
func contiguous(since uint64, pubs []broker.Publication, last uint64) bool {
	next := since + 1
	for _, p := range pubs {
		if p.Offset != next {
			return false
		}
		next++
	}
	return next == last+1
}

// Broadcast publishes data on the control channel every node subscribes to.
func (b *Broker) Broadcast(ctx context.Context, data []byte) error {
	if err := b.ready(); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	cmd := b.client.B().Publish().Channel(b.ctlChan).Message(string(data)).Build()
	if err := b.client.Do(ctx, cmd).Error(); err != nil {
		return b.fail("broadcast", "", err)
	}
	return nil
}

// SendNode publishes data on node's own channel. It fails with ErrUnavailable
// when no node of that name is subscribed.
func (b *Broker) SendNode(ctx context.Context, node string, data []byte) error {
	if err := b.ready(); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	cmd := b.client.B().Publish().Channel(b.cfg.Prefix + ":node:" + node).Message(string(data)).Build()
	n, err := b.client.Do(ctx, cmd).AsInt64()
	if err != nil {
		return b.fail("send to node", node, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: send to node %q: %w: no such node is connected", node, broker.ErrUnavailable)
	}
	return nil
}

// usable checks the broker can serve a call about topic.
func (b *Broker) usable(topic string) error {
	if err := b.ready(); err != nil {
		return err
	}
	if topic == "" {
		return broker.ErrBadTopic
	}
	return nil
}

// ready checks the broker was started and not closed.
func (b *Broker) ready() error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.client == nil {
		return fmt.Errorf("redis: not started: %w", broker.ErrUnavailable)
	}
	return nil
}

// bound limits ctx to RequestTimeout.
func (b *Broker) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.RequestTimeout)
}

// fail wraps a failed call's error for the caller.
func (b *Broker) fail(op, what string, err error) error {
	if b.closed.Load() {
		return fmt.Errorf("redis: %s %q: %w", op, what, broker.ErrClosed)
	}
	return fmt.Errorf("redis: %s %q: %w: %w", op, what, broker.ErrUnavailable, err)
}

func (b *Broker) keys(topic string) []string {
	tag := b.cfg.Prefix + ":{" + topic + "}:"
	return []string{tag + "m", tag + "h"}
}

// readArgs are the read script's arguments: publications after since, at most
// count; fromStart reads the whole history when since is of another epoch.
func (b *Broker) readArgs(since broker.Position, count int, fromStart bool) []string {
	start := "0"
	if fromStart {
		start = "1"
	}
	return []string{newEpoch(), b.ttlMillis, since.Epoch, strconv.FormatUint(since.Offset, 10),
		strconv.Itoa(count), start}
}

// newEpoch returns a fresh epoch name. It needs to differ from every earlier
// epoch of the topic, not to be unpredictable.
func newEpoch() string {
	return strconv.FormatUint(rand.Uint64(), 16)
}
