package nats

import (
	"context"
	"errors"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/track"
)

// Subscribe subscribes the topic's live subject, waits until the server has the
// subscription, then reads the topic's last message from the stream leader as
// the baseline: every publication after it is delivered, live or, after a gap,
// from history.
func (b *Broker) Subscribe(ctx context.Context, topic string) error {
	if err := b.usable(topic); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	b.mu.Lock()
	if _, ok := b.set.Tracks[topic]; ok {
		b.mu.Unlock()
		return nil
	}
	tr := &track.Track{}
	b.set.Tracks[topic] = tr
	b.mu.Unlock()

	// One channel for every topic: one delivery goroutine instead of one per
	// subscription, and a full channel drops (then reads history) instead of
	// blocking the connection's reader.
	sub, err := b.nc.ChanSubscribe(b.livePrefix+token(topic), b.liveCh)
	if err == nil {
		b.mu.Lock()
		if b.set.Tracks[topic] == tr {
			b.subs[sub] = topic
			b.liveSubs[topic] = sub
		}
		b.mu.Unlock()
		err = b.nc.FlushWithContext(ctx)
	}
	var at tip
	if err == nil {
		if at, err = b.last(ctx, topic); errors.Is(err, jetstream.ErrStreamNotFound) {
			err = nil // no history at all: the baseline is the zero position
		}
	}
	if err != nil {
		b.forget(topic, tr, sub)
		return b.fail("subscribe", topic, err)
	}
	b.mu.Lock()
	if b.set.Tracks[topic] == tr {
		tr.Baseline(at.pos)
	}
	b.mu.Unlock()
	return nil
}

// Unsubscribe forgets topic at once, so nothing more of it is delivered, and
// unsubscribes its live subject.
func (b *Broker) Unsubscribe(_ context.Context, topic string) error {
	if err := b.usable(topic); err != nil {
		return err
	}
	b.mu.Lock()
	tr, sub := b.set.Tracks[topic], b.liveSubs[topic]
	b.mu.Unlock()
	if tr == nil {
		return nil
	}
	if err := b.forget(topic, tr, sub); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
		return b.fail("unsubscribe", topic, err)
	}
	return nil
}

// forget drops tr, topic's track, and its live subscription sub.
func (b *Broker) forget(topic string, tr *track.Track, sub *natsgo.Subscription) error {
	b.mu.Lock()
	b.set.Forget(topic, tr)
	if sub != nil {
		delete(b.subs, sub)
		if b.liveSubs[topic] == sub {
			delete(b.liveSubs, topic)
		}
	}
	b.mu.Unlock()
	if sub == nil {
		return nil
	}
	return sub.Unsubscribe()
}

// deliverLoop hands live publications to the handler, in the order the
// connection received them.
func (b *Broker) deliverLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-b.liveCh:
			b.onLive(m)
		}
	}
}

func (b *Broker) onLive(m *natsgo.Msg) {
	pos, ok := position(m.Header)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	topic, ok := b.subs[m.Sub]
	if !ok {
		return // unsubscribed since
	}
	b.set.Live(topic, broker.Publication{Topic: topic, Offset: pos.Offset, Epoch: pos.Epoch,
		Data: m.Data, User: m.Header.Get(hdrUser)})
}

// syncLoop reads the history of topics that showed a gap or lived through a
// reconnect, and delivers what they missed.
func (b *Broker) syncLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.set.Kick:
		}
		b.mu.Lock()
		topics := b.set.TakeDirty()
		b.mu.Unlock()
		var failed error
		for _, t := range topics {
			if err := b.syncTopic(ctx, t); err != nil {
				if ctx.Err() != nil {
					return
				}
				failed = err
				b.mu.Lock()
				b.set.Retry(t)
				b.mu.Unlock()
			}
		}
		if failed != nil {
			b.log.Warn("nats: reading missed publications failed; retrying", "err", failed)
			select {
			case <-ctx.Done():
				return
			case <-time.After(b.cfg.ReconnectWait):
			}
			select {
			case b.set.Kick <- struct{}{}:
			default:
			}
		}
	}
}

func (b *Broker) syncTopic(ctx context.Context, topic string) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	at, err := b.last(ctx, topic)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	var pubs []broker.Publication
	if at.valid && at.pos.Offset > 0 {
		if pubs, err = b.fetch(ctx, topic, at); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.set.Filled(topic, at.pos, pubs, false)
	b.stats.Filled.Add(uint64(f.Filled))
	if f.Jumped {
		b.stats.Jumps.Add(1)
		b.log.Warn("nats: publications missed live are gone from history; delivery skips them",
			"topic", topic, "epoch", at.pos.Epoch, "offset", at.pos.Offset)
	}
	return nil
}

// reconnected runs on nats.go's callback goroutine once the connection is back
// and every subscription was sent again. What was published meanwhile never
// reached this node, so every topic's history is read; and what this node
// remembers of topics' last messages may be stale.
func (b *Broker) reconnected(nc *natsgo.Conn) {
	b.stats.Reconnects.Add(1)
	b.log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
	b.tipsMu.Lock()
	clear(b.tips)
	b.tipsMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set.ResyncAll()
}

// asyncError runs on nats.go's callback goroutine. A slow consumer dropped
// live messages of sub's topic: read them from history.
func (b *Broker) asyncError(sub *natsgo.Subscription, err error) {
	if errors.Is(err, natsgo.ErrSlowConsumer) && sub != nil {
		b.mu.Lock()
		topic, ok := b.subs[sub]
		if ok {
			b.set.Resync(topic)
		}
		b.mu.Unlock()
		if ok {
			b.log.Warn("nats: live publications dropped; reading them from history", "topic", topic)
			return
		}
	}
	b.log.Warn("nats: asynchronous error", "err", err)
}
