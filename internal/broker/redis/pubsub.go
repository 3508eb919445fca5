package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/track"
)

// subscribeBatch is how many channels one SUBSCRIBE names, and how many topics
// one pipelined batch of stream reads covers, when a connection is remade.
const subscribeBatch = 256

var errConnClosed = errors.New("redis: pubsub connection closed")

// psConn is one dedicated Pub/Sub connection. Redis speaks RESP3 on it, so
// commands may share it with subscriptions, and their replies arrive in order
// with the messages: a read made on it sees every publication whose message
// came before the reply.
type psConn struct {
	dc   rueidis.DedicatedClient
	lost <-chan error // closed when the connection is gone
	// dead is set when the connection is retired; late messages are ignored.
	dead atomic.Bool
	// probed is the highest probe nonce that came back; probeSig wakes the
	// waiting probe (cap 1).
	probed   atomic.Uint64
	probeSig chan struct{}
}

// connect opens a Pub/Sub connection, subscribes the control channels and
// every subscribed topic, puts it in service, and reads each topic's stream
// to deliver what was missed while there was no connection.
func (b *Broker) connect(ctx context.Context) (*psConn, error) {
	dc, _ := b.client.Dedicate() // dc.Close both closes and releases it
	c := &psConn{dc: dc, probeSig: make(chan struct{}, 1)}
	c.lost = dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) { b.onMessage(c, m) }})
	if err := b.subscribeAll(ctx, c); err != nil {
		b.retire(c)
		return nil, err
	}
	return c, nil
}

func (b *Broker) subscribeAll(ctx context.Context, c *psConn) error {
	rctx, cancel := b.bound(ctx)
	err := c.dc.Do(rctx, c.dc.B().Subscribe().Channel(b.ctlChan, b.nodeChan, b.probeChan).Build()).Error()
	cancel()
	if err != nil {
		return fmt.Errorf("subscribe control channels: %w", err)
	}
	b.mu.Lock()
	topics := make([]string, 0, len(b.set.Tracks))
	for t, tr := range b.set.Tracks {
		topics = append(topics, t)
		if tr.Known() {
			// Until the read below lands, what arrives after a gap waits.
			tr.Syncing()
		}
	}
	b.conn = c
	b.connChangedLocked()
	b.mu.Unlock()
	for chunk := range slices.Chunk(topics, subscribeBatch) {
		chans := make([]string, len(chunk))
		for i, t := range chunk {
			chans[i] = b.topicChan + t
		}
		rctx, cancel := b.bound(ctx)
		err := c.dc.Do(rctx, c.dc.B().Subscribe().Channel(chans...).Build()).Error()
		cancel()
		if err != nil {
			return fmt.Errorf("resubscribe %d topics: %w", len(topics), err)
		}
	}
	return b.sync(ctx, c, topics)
}

// retire takes c out of service and closes it. Once it returns, no
// publication from c reaches the handler.
func (b *Broker) retire(c *psConn) {
	b.mu.Lock()
	c.dead.Store(true)
	if b.conn == c {
		b.conn = nil
		b.connChangedLocked()
	}
	b.mu.Unlock()
	c.dc.Close()
}

func (b *Broker) connChangedLocked() {
	close(b.connCh)
	b.connCh = make(chan struct{})
}

// run owns the Pub/Sub connection: it serves c until it fails, then reconnects
// with backoff, until ctx ends.
func (b *Broker) run(ctx context.Context, c *psConn) {
	defer b.wg.Done()
	wait := b.cfg.ReconnectWait
	for {
		if c != nil {
			err := b.serve(ctx, c)
			b.retire(c)
			c = nil
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("redis: pubsub connection lost; reconnecting", "err", err)
		}
		// Jitter keeps a cluster's nodes from reconnecting in lockstep.
		pause := wait/2 + rand.N(wait/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		var err error
		if c, err = b.connect(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("redis: pubsub reconnect failed", "err", err, "retry_in", wait)
			wait = min(2*wait, maxReconnectWait)
			continue
		}
		b.stats.Reconnects.Add(1)
		b.log.Info("redis: pubsub reconnected")
		wait = b.cfg.ReconnectWait
	}
}

// serve probes c every ProbeInterval and reads the streams of topics whose live
// delivery showed a gap. It returns when c fails.
func (b *Broker) serve(ctx context.Context, c *psConn) error {
	t := time.NewTicker(b.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-c.lost:
			if err == nil {
				err = errConnClosed
			}
			return err
		case <-b.set.Kick:
			b.mu.Lock()
			topics := b.set.TakeDirty()
			b.mu.Unlock()
			if err := b.sync(ctx, c, topics); err != nil {
				// The reconnect reads every topic again.
				return fmt.Errorf("read missed publications: %w", err)
			}
		case <-t.C:
			if err := b.probe(ctx, c); err != nil {
				b.stats.ProbeFailures.Add(1)
				return err
			}
		}
	}
}

// probe publishes a ping to this broker's own channel through the command
// connection and waits for it on c. A Pub/Sub connection can look alive to
// both TCP and Redis while delivering nothing; only a round trip proves it.
func (b *Broker) probe(ctx context.Context, c *psConn) error {
	nonce := b.probeSeq.Add(1)
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ProbeTimeout)
	defer cancel()
	cmd := b.client.B().Publish().Channel(b.probeChan).Message(strconv.FormatUint(nonce, 10)).Build()
	if err := b.client.Do(ctx, cmd).Error(); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	for c.probed.Load() < nonce {
		select {
		case <-c.probeSig:
		case err := <-c.lost:
			if err == nil {
				err = errConnClosed
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("probe: no echo within %v", b.cfg.ProbeTimeout)
		}
	}
	return nil
}

// onMessage handles one Pub/Sub message. rueidis calls it on c's reading
// goroutine, one message at a time, before it reads the next reply.
func (b *Broker) onMessage(c *psConn, m rueidis.PubSubMessage) {
	if c.dead.Load() {
		return
	}
	switch {
	case m.Channel == b.probeChan:
		n, err := strconv.ParseUint(m.Message, 10, 64)
		if err != nil {
			return
		}
		for {
			old := c.probed.Load()
			if n <= old || c.probed.CompareAndSwap(old, n) {
				break
			}
		}
		select {
		case c.probeSig <- struct{}{}:
		default:
		}
	case m.Channel == b.ctlChan || m.Channel == b.nodeChan:
		b.h.HandleControl([]byte(m.Message))
	case strings.HasPrefix(m.Channel, b.topicChan):
		topic := m.Channel[len(b.topicChan):]
		p, err := decodePublication(topic, m.Message)
		if err != nil {
			b.log.Warn("redis: dropping malformed publication", "topic", topic, "err", err)
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if c.dead.Load() {
			return
		}
		b.set.Live(topic, p)
	}
}

// sync reads the streams of topics on c and delivers what each missed; for a
// topic that has delivered nothing yet the read only sets its baseline.
func (b *Broker) sync(ctx context.Context, c *psConn, topics []string) error {
	for chunk := range slices.Chunk(topics, subscribeBatch) {
		args := make([][]string, len(chunk))
		cmds := make(rueidis.Commands, len(chunk))
		b.mu.Lock()
		for i, t := range chunk {
			var since broker.Position
			if tr := b.set.Tracks[t]; tr != nil && tr.Known() {
				since = tr.Position()
			}
			args[i] = b.readArgs(since, b.cfg.HistorySize, since.Epoch != "")
			cmds[i] = b.read.evalsha(c.dc, b.keys(t), args[i])
		}
		b.mu.Unlock()
		rctx, cancel := b.bound(ctx)
		resps := c.dc.DoMulti(rctx, cmds...)
		for i, resp := range resps {
			if noScript(resp.Error()) {
				resps[i] = c.dc.Do(rctx, b.read.eval(c.dc, b.keys(chunk[i]), args[i]))
			}
		}
		cancel()
		for i, resp := range resps {
			pos, pubs, err := decodeRead(chunk[i], resp)
			if err != nil {
				b.mu.Lock()
				for _, t := range chunk[i:] {
					b.set.Retry(t)
				}
				b.mu.Unlock()
				return fmt.Errorf("read %q: %w", chunk[i], err)
			}
			b.applyRead(chunk[i], pos, pubs)
		}
	}
	return nil
}

func (b *Broker) applyRead(topic string, pos broker.Position, pubs []broker.Publication) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tr := b.set.Tracks[topic]
	if tr == nil {
		return
	}
	wasKnown := tr.Known()
	if at := tr.Position(); wasKnown && pos.Epoch == at.Epoch && pos.Offset < at.Offset {
		// Nothing can be done for what was lost, and the offsets after
		// pos will be given again, which this node drops as repeats until
		// they pass tr.last: say so loudly. A publish after the restart
		// may also have hidden the rollback from this read already.
		b.stats.Rollbacks.Add(1)
		b.log.Error("redis: topic history is behind what this node delivered; Redis lost acknowledged publications",
			"topic", topic, "epoch", pos.Epoch, "offset", pos.Offset, "delivered", at.Offset)
	}
	more := len(pubs) == b.cfg.HistorySize && pubs[len(pubs)-1].Offset < pos.Offset
	if more {
		// A stream longer than this node's HistorySize (another node trims
		// with a larger one): take this part now, the rest on the next read.
		pos.Offset = pubs[len(pubs)-1].Offset
	}
	f := b.set.Filled(topic, pos, pubs, more)
	b.stats.Filled.Add(uint64(f.Filled))
	if f.Jumped {
		b.stats.Jumps.Add(1)
		b.log.Warn("redis: publications missed live are gone from history; delivery skips them",
			"topic", topic, "epoch", pos.Epoch, "offset", pos.Offset)
	}
}

// Subscribe subscribes topic's channel on the Pub/Sub connection, then reads
// the topic's position on the same connection as the baseline: every
// publication after it is delivered, live or, after a reconnect, from history.
// While the connection is being remade it waits for the new one.
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
	var last error
	for {
		b.mu.Lock()
		c, changed := b.conn, b.connCh
		b.mu.Unlock()
		if c != nil {
			if last = b.subscribeOn(ctx, c, topic); last == nil {
				return nil
			}
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
		case <-b.done:
			last = broker.ErrClosed
		}
		b.mu.Lock()
		b.set.Forget(topic, tr)
		b.mu.Unlock()
		return b.fail("subscribe", topic, last)
	}
}

func (b *Broker) subscribeOn(ctx context.Context, c *psConn, topic string) error {
	if err := c.dc.Do(ctx, c.dc.B().Subscribe().Channel(b.topicChan+topic).Build()).Error(); err != nil {
		return err
	}
	pos, _, err := decodeRead(topic, b.read.run(ctx, c.dc, b.keys(topic), b.readArgs(broker.Position{}, 1, false)))
	if err != nil {
		return err
	}
	b.mu.Lock()
	if tr := b.set.Tracks[topic]; tr != nil {
		tr.Baseline(pos)
	}
	b.mu.Unlock()
	return nil
}

// Unsubscribe forgets topic at once, so nothing more of it is delivered, and
// unsubscribes its channel. If the connection is down there is nothing to
// undo: the next one is made without the topic.
func (b *Broker) Unsubscribe(ctx context.Context, topic string) error {
	if err := b.usable(topic); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	b.mu.Lock()
	b.set.Forget(topic, b.set.Tracks[topic])
	c := b.conn
	b.mu.Unlock()
	if c == nil {
		return nil
	}
	err := c.dc.Do(ctx, c.dc.B().Unsubscribe().Channel(b.topicChan+topic).Build()).Error()
	if err != nil && !c.dead.Load() {
		return b.fail("unsubscribe", topic, err)
	}
	return nil
}
