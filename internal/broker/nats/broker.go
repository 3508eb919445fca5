package nats

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/track"
)

var _ broker.Broker = (*Broker)(nil)

const (
	// publishStripes is how many locks serialize this node's publishes; a
	// topic always takes the same one.
	publishStripes = 64
	// maxTips bounds the remembered last messages; past it they are forgotten
	// and read again on the next publish.
	maxTips = 1 << 16
	// maxPublishAttempts bounds the retries of a publish that lost a race
	// with another node publishing to the same topic.
	maxPublishAttempts = 32
)

// Broker is a broker.Broker on NATS with JetStream. Create it with New.
type Broker struct {
	// Immutable after New.
	cfg        Config
	node       string
	log        *slog.Logger
	histPrefix string // "herald.h."
	livePrefix string // "herald.l."
	ctlSubj    string
	nodePrefix string // "herald.n."
	apiPrefix  string // "$JS.API."
	seed       maphash.Seed
	stripes    [publishStripes]chan struct{} // cap 1 each: a lock that honours ctx
	liveCh     chan *natsgo.Msg
	done       chan struct{} // closed by Close
	nodesBk    bucket
	usersBk    bucket
	topicsBk   bucket
	reapKick   chan struct{} // cap 1: wakes the reaper

	// Set by Start, which the broker.Broker contract puts before every other call.
	nc     *natsgo.Conn
	js     jetstream.JetStream
	h      broker.Handler
	cancel context.CancelFunc
	ctlSub []*natsgo.Subscription
	mux    *mux // replies to presence requests

	closed atomic.Bool
	stats  broker.LiveCounters
	wg     sync.WaitGroup // the delivery, sync and reaper goroutines

	// annMu serializes Announce and Leave, which replace announcements.
	annMu  sync.Mutex
	presMu sync.Mutex
	anns   map[string]announcement // Guarded by presMu: node → its announcement through this broker

	tipsMu sync.Mutex
	tips   map[string]tip // Guarded by tipsMu.

	mu sync.Mutex
	// Guarded by mu.
	started  bool
	set      *track.Set                      // the subscribed topics; Kick wakes the sync goroutine
	subs     map[*natsgo.Subscription]string // live subscription → topic
	liveSubs map[string]*natsgo.Subscription // topic → live subscription
}

// Stats are the broker's lifetime counters: all but ProbeFailures and Rollbacks.
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
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := cfg.SubjectPrefix + "."
	b := &Broker{
		cfg:        cfg,
		node:       node,
		log:        logger.With("component", "broker/nats", "node", node),
		histPrefix: p + "h.",
		livePrefix: p + "l.",
		ctlSubj:    p + "c",
		nodePrefix: p + "n.",
		apiPrefix:  "$JS.API.",
		seed:       maphash.MakeSeed(),
		liveCh:     make(chan *natsgo.Msg, cfg.DeliveryBuffer),
		done:       make(chan struct{}),
		nodesBk:    newBucket(bucketName(cfg.Stream, bucketNodes)),
		usersBk:    newBucket(bucketName(cfg.Stream, bucketUsers)),
		topicsBk:   newBucket(bucketName(cfg.Stream, bucketTopics)),
		reapKick:   make(chan struct{}, 1),
		anns:       make(map[string]announcement),
		tips:       make(map[string]tip),
		set:        track.NewSet(max(2*cfg.HistorySize, 64)),
		subs:       make(map[*natsgo.Subscription]string),
		liveSubs:   make(map[string]*natsgo.Subscription),
	}
	for i := range b.stripes {
		b.stripes[i] = make(chan struct{}, 1)
	}
	return b, nil
}

// Start connects, creates or updates the history stream, subscribes this
// node's control subjects and starts the delivery and sync goroutines. It
// fails with ErrUnavailable when NATS cannot be reached before ctx ends.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return broker.ErrClosed
	}
	if b.started {
		b.mu.Unlock()
		return errors.New("nats: Start called twice")
	}
	b.started = true
	b.set.Handler = h
	b.mu.Unlock()
	b.h = h

	nc, err := natsgo.Connect(b.cfg.URL,
		natsgo.Name("herald "+b.node),
		natsgo.Timeout(b.cfg.DialTimeout),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(b.cfg.ReconnectWait),
		// A publish made while disconnected must fail, not wait in a buffer
		// and take effect after its caller gave up on it.
		natsgo.ReconnectBufSize(-1),
		natsgo.PingInterval(b.cfg.PingInterval),
		natsgo.MaxPingsOutstanding(2),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if !b.closed.Load() {
				b.log.Warn("nats: disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(b.reconnected),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) { b.asyncError(sub, err) }),
	)
	if err != nil {
		return fmt.Errorf("nats: connect: %w: %w", broker.ErrUnavailable, err)
	}
	b.nc = nc
	if err := b.start(ctx); err != nil {
		nc.Close()
		return fmt.Errorf("nats: start: %w: %w", broker.ErrUnavailable, err)
	}
	return nil
}

func (b *Broker) start(ctx context.Context) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	js, err := jetstream.New(b.nc)
	if err != nil {
		return err
	}
	b.js = js
	if err := b.ensureStream(ctx); err != nil {
		return fmt.Errorf("history stream: %w", err)
	}
	if err := b.ensureBuckets(ctx); err != nil {
		return fmt.Errorf("presence buckets: %w", err)
	}
	ctl, err := b.nc.Subscribe(b.ctlSubj, func(m *natsgo.Msg) { b.h.HandleControl(m.Data) })
	if err != nil {
		return err
	}
	direct, err := b.nc.Subscribe(b.nodePrefix+token(b.node), func(m *natsgo.Msg) {
		b.h.HandleControl(m.Data)
		_ = m.Respond(nil) // tells the sender the node took it
	})
	if err != nil {
		return err
	}
	b.mux = newMux(b.nc.NewInbox())
	replies, err := b.nc.Subscribe(b.mux.prefix+">", b.mux.deliver)
	if err != nil {
		return err
	}
	b.ctlSub = []*natsgo.Subscription{ctl, direct, replies}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.Background())
	b.cancel = stop
	b.wg.Add(3)
	go b.deliverLoop(runCtx)
	go b.syncLoop(runCtx)
	go b.reapLoop(runCtx)
	return nil
}

// Close stops delivery, waits for the broker's goroutines and closes the
// connection. Calls after the first return nil.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(b.done)
	if b.cancel != nil {
		b.cancel()
		b.wg.Wait()
	}
	if b.nc != nil {
		b.nc.Close()
	}
	return nil
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return b.stats.Snapshot()
}

// Publish stores the publication with the topic's next offset, on condition
// that the topic's last message is still the one this node last saw. The
// stream republishes it to the live subject once stored.
func (b *Broker) Publish(ctx context.Context, topic string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.usable(topic); err != nil {
		return broker.Position{}, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	pos, err := b.append(ctx, topic, data, opts.User, false)
	if err != nil {
		return broker.Position{}, b.fail("publish", topic, err)
	}
	return pos, nil
}

// append stores the topic's next message. A marker (offset 0, no data) is
// stored only when the topic has no message, to fix the epoch its first
// publications will carry; if the topic has one, its position is returned.
func (b *Broker) append(ctx context.Context, topic string, data []byte, user string, marker bool) (broker.Position, error) {
	unlock, err := b.lockTopic(ctx, topic)
	if err != nil {
		return broker.Position{}, err
	}
	defer unlock()
	subj := b.histPrefix + token(topic)
	for attempt := 1; ; attempt++ {
		last, ok := b.tip(topic)
		if !ok {
			if last, err = b.last(ctx, topic); errors.Is(err, jetstream.ErrStreamNotFound) {
				if err = b.ensureStream(ctx); err == nil {
					continue
				}
			}
			if err != nil {
				return broker.Position{}, err
			}
		}
		if marker && last.valid {
			b.setTip(topic, last)
			return last.pos, nil
		}
		next := broker.Position{Offset: last.pos.Offset + 1, Epoch: last.pos.Epoch}
		if !last.valid {
			// The topic has no history: whatever it had is gone, so start an epoch.
			next = broker.Position{Offset: 1, Epoch: newEpoch()}
		}
		if marker {
			next.Offset = 0
		}
		m := natsgo.NewMsg(subj)
		m.Header.Set(hdrOffset, strconv.FormatUint(next.Offset, 10))
		m.Header.Set(hdrEpoch, next.Epoch)
		if user != "" {
			m.Header.Set(hdrUser, user)
		}
		m.Data = data
		ack, err := b.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(last.seq))
		if err == nil {
			b.setTip(topic, tip{seq: ack.Sequence, pos: next, valid: true})
			return next, nil
		}
		b.dropTip(topic)
		if attempt >= maxPublishAttempts {
			return broker.Position{}, err
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			b.stats.Conflicts.Add(1)
		case errors.Is(err, jetstream.ErrNoStreamResponse):
			// The stream is gone (a server lost its storage) or has no leader yet.
			if err := b.ensureStream(ctx); err != nil {
				return broker.Position{}, err
			}
		default:
			return broker.Position{}, err
		}
	}
}

// lockTopic serializes this node's publishes to topic, so they do not race
// each other's expected-sequence checks.
func (b *Broker) lockTopic(ctx context.Context, topic string) (func(), error) {
	s := b.stripes[maphash.String(b.seed, topic)%publishStripes]
	select {
	case s <- struct{}{}:
		return func() { <-s }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *Broker) tip(topic string) (tip, bool) {
	b.tipsMu.Lock()
	defer b.tipsMu.Unlock()
	t, ok := b.tips[topic]
	return t, ok
}

func (b *Broker) setTip(topic string, t tip) {
	b.tipsMu.Lock()
	defer b.tipsMu.Unlock()
	if len(b.tips) >= maxTips {
		clear(b.tips)
	}
	b.tips[topic] = t
}

func (b *Broker) dropTip(topic string) {
	b.tipsMu.Lock()
	defer b.tipsMu.Unlock()
	delete(b.tips, topic)
}

// History reads the topic's last message from the stream leader, then its
// retained publications with one batched direct get. For a topic with no
// message it stores an epoch marker first, so the position it returns stays
// valid for the publications that follow.
func (b *Broker) History(ctx context.Context, topic string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	if err := b.usable(topic); err != nil {
		return broker.HistoryResult{}, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	res, err := b.history(ctx, topic, req)
	if err != nil {
		return broker.HistoryResult{}, b.fail("history", topic, err)
	}
	return res, nil
}

func (b *Broker) history(ctx context.Context, topic string, req broker.HistoryRequest) (broker.HistoryResult, error) {
	at, err := b.last(ctx, topic)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = nil // append recreates it
	}
	if err != nil {
		return broker.HistoryResult{}, err
	}
	if !at.valid {
		b.dropTip(topic)
		if _, err := b.append(ctx, topic, nil, "", true); err != nil {
			return broker.HistoryResult{}, err
		}
		if at, err = b.last(ctx, topic); err != nil {
			return broker.HistoryResult{}, err
		}
	}
	res := broker.HistoryResult{Position: at.pos}
	if req.Since == nil {
		return res, nil
	}
	since := *req.Since
	if since.Epoch != at.pos.Epoch || since.Offset > at.pos.Offset {
		return res, nil
	}
	if since.Offset == at.pos.Offset {
		res.Recovered = true
		return res, nil
	}
	pubs, err := b.fetch(ctx, topic, at)
	if err != nil {
		return broker.HistoryResult{}, err
	}
	i := 0
	for i < len(pubs) && pubs[i].Offset <= since.Offset {
		i++
	}
	pubs = pubs[i:]
	limit := req.Limit
	if limit <= 0 {
		limit = b.cfg.HistorySize
	}
	res.Recovered = contiguous(since.Offset, pubs, at.pos.Offset)
	if len(pubs) > limit {
		pubs, res.Recovered = pubs[:limit], false
	}
	res.Publications = pubs
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

// Broadcast publishes data on the control subject every node subscribes to,
// and waits until the server has it.
func (b *Broker) Broadcast(ctx context.Context, data []byte) error {
	if err := b.ready(); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.nc.Publish(b.ctlSubj, data); err != nil {
		return b.fail("broadcast", "", err)
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return b.fail("broadcast", "", err)
	}
	return nil
}

// SendNode sends data to node as a request, which the node answers once it
// handed the message to its handler. It fails with ErrUnavailable when no node
// of that name is connected.
func (b *Broker) SendNode(ctx context.Context, node string, data []byte) error {
	if err := b.ready(); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if _, err := b.nc.RequestWithContext(ctx, b.nodePrefix+token(node), data); err != nil {
		if errors.Is(err, natsgo.ErrNoResponders) {
			return fmt.Errorf("nats: send to node %q: %w: no such node is connected", node, broker.ErrUnavailable)
		}
		return b.fail("send to node", node, err)
	}
	return nil
}

// usable checks the broker can serve a call about topic.
func (b *Broker) usable(topic string) error {
	if err := b.ready(); err != nil {
		return err
	}
	if topic == "" || len(topic) > maxTopicLen {
		return fmt.Errorf("nats: topic of %d bytes: %w", len(topic), broker.ErrBadTopic)
	}
	return nil
}

// ready checks the broker was started and not closed.
func (b *Broker) ready() error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if b.nc == nil {
		return fmt.Errorf("nats: not started: %w", broker.ErrUnavailable)
	}
	return nil
}

// bound limits ctx to RequestTimeout.
func (b *Broker) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.RequestTimeout)
}

// fail wraps a failed call's error for the caller.
func (b *Broker) fail(op, what string, err error) error {
	if b.closed.Load() || errors.Is(err, natsgo.ErrConnectionClosed) {
		return fmt.Errorf("nats: %s %q: %w", op, what, broker.ErrClosed)
	}
	return fmt.Errorf("nats: %s %q: %w: %w", op, what, broker.ErrUnavailable, err)
}

// newEpoch returns a fresh epoch name. It needs to differ from every earlier
// epoch of the topic, not to be unpredictable.
func newEpoch() string {
	return strconv.FormatUint(rand.Uint64(), 16)
}
