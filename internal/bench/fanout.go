package bench

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/client"
)

// runFanout subscribes the connections to the topics (round robin), publishes
// through the admin API at the target rate or as fast as deliveries complete, and
// measures deliveries per second, latency from the publish call to each delivery
// (the payload carries the send time), and messages lost or duplicated.
//
// Publishing goes through the admin API, as a game server's would: a client's
// publishes are capped by the node's per-session rate limit. "As fast as the node
// takes" is closed loop: each topic may have InFlight messages published and not
// yet delivered to all its subscribers. An open loop would only measure how fast
// queues fill until slow consumers are cut off, since the subscribers share the
// machine's cores with the node.
func runFanout(ctx context.Context, s *settings, a *admin, log *slog.Logger, r *Report) error {
	fo := newFanout(s, a)
	x := &FanoutReport{Topics: s.Topics, Size: s.Size, TargetRate: s.Rate}
	if s.Rate == 0 {
		x.InFlight = s.InFlight
	}
	r.Fanout = x

	f := openFleet(ctx, s, log, fo.subscribe, fo.dropped)
	defer f.close()
	x.Subscribers = f.opened
	if f.opened == 0 {
		r.recordFleet(f)
		return errors.New("bench: no subscriber connected")
	}

	stop := make(chan struct{})
	var pubs sync.WaitGroup
	if s.Rate > 0 {
		fo.paced(ctx, stop, &pubs)
	} else {
		fo.closedLoop(ctx, stop, &pubs)
	}
	log.Info("bench: publishing", "subscribers", f.opened, "topics", s.Topics, "rate", s.Rate, "warmup", s.Warmup)
	sleep(ctx, s.Warmup)

	fo.hist.reset()
	fo.from.Store(int64(fo.now()))
	d0, p0 := fo.delivered(), fo.published()
	start := takeSample(ctx, a, log)
	stopCPU := startCPUProfile(ctx, s, a, log)
	sleep(ctx, s.Duration)
	fo.to.Store(int64(fo.now()))
	d1, p1 := fo.delivered(), fo.published()
	end := takeSample(ctx, a, log)
	stopCPU()
	close(stop)
	pubs.Wait()
	r.window(start, end)
	fo.drain(ctx, log)
	saveProfiles(ctx, s, a, log)
	r.recordFleet(f)

	secs := end.at.Sub(start.at).Seconds()
	x.PublishRate = float64(p1-p0) / secs
	x.DeliveriesPerSec = float64(d1-d0) / secs
	if cpu := end.stats.CPUSeconds - start.stats.CPUSeconds; cpu > 0 {
		x.DeliveriesPerServerCPU = float64(d1-d0) / cpu
	}
	x.PublishErrors = fo.pubErrs.total()
	x.PublishReasons = fo.pubErrs.snapshot()
	for _, t := range fo.topics {
		n := t.published.Load()
		x.Published += n
		x.ExpectedDeliveries += n * uint64(t.subs.Load())
	}
	for i := range fo.subs {
		sub := &fo.subs[i]
		if sub.state.Load() == subNone {
			continue
		}
		got := sub.got.Load()
		x.Deliveries += got
		if want := sub.topic.published.Load(); got < want {
			x.Lost += want - got
		}
		x.Duplicated += sub.dups.Load()
	}
	x.Latency = fo.hist.snapshot()
	if n := fo.foreign.Load(); n > 0 {
		r.note("%d messages without the bench's payload arrived on its topics", n)
	}
	return nil
}

// Subscriber states: a subscriber counts toward its topic from its confirmed
// subscribe until its connection drops.
const (
	subNone int32 = iota
	subAlive
	subDropped
)

type fanout struct {
	// Immutable after newFanout.
	s      *settings
	a      *admin
	base   time.Time // origin of the payload clock
	topics []*ftopic
	subs   []fsub // by connection index

	hist hist
	// Payloads sent in [from, to) (on the payload clock) are the measured ones.
	from, to atomic.Int64
	pubErrs  *tally
	foreign  atomic.Uint64 // messages that did not carry a bench payload
}

type ftopic struct {
	name   string
	prefix []byte // the publish body up to the payload
	seq    atomic.Uint32

	subs      atomic.Int64  // subscribers confirmed
	alive     atomic.Int64  // of those, still connected
	issued    atomic.Uint64 // publishes sent or being sent, less the failed
	published atomic.Uint64 // publishes acknowledged
	deliv     counter
}

// fsub is one subscriber's view of its topic. Its reader goroutine writes it;
// the publisher and the final count read it.
type fsub struct {
	topic *ftopic
	state atomic.Int32
	last  atomic.Uint64 // last offset received
	got   atomic.Uint64 // offsets received
	dups  atomic.Uint64 // offsets received again
}

func newFanout(s *settings, a *admin) *fanout {
	fo := &fanout{s: s, a: a, base: time.Now(), subs: make([]fsub, s.Conns), pubErrs: newTally()}
	fo.to.Store(math.MaxInt64)
	fo.from.Store(math.MaxInt64)
	for _, name := range topicNames(s.Topics) {
		prefix := append([]byte(`{"topic":`), strconv.Quote(name)...)
		fo.topics = append(fo.topics, &ftopic{name: name, prefix: append(prefix, `,"data":`...)})
	}
	for i := range fo.subs {
		fo.subs[i].topic = fo.topics[i%len(fo.topics)]
	}
	return fo
}

func (fo *fanout) now() time.Duration { return time.Since(fo.base) }

// subscribe is the fleet's setup: it subscribes connection i to its topic.
func (fo *fanout) subscribe(ctx context.Context, i int, c *client.Client) error {
	sub := &fo.subs[i]
	t := sub.topic
	pos, err := c.Subscribe(ctx, t.name, func(m client.Message) { fo.receive(i, sub, m) })
	if err != nil {
		return err
	}
	sub.last.Store(pos.Position.Offset)
	if !sub.state.CompareAndSwap(subNone, subAlive) {
		return errors.New("bench: connection dropped while subscribing")
	}
	t.subs.Add(1)
	t.alive.Add(1)
	return nil
}

// dropped is the fleet's onDrop: a lost subscriber no longer holds back its
// topic's closed loop.
func (fo *fanout) dropped(i int) {
	sub := &fo.subs[i]
	if sub.state.CompareAndSwap(subAlive, subDropped) {
		sub.topic.alive.Add(-1)
		return
	}
	sub.state.CompareAndSwap(subNone, subDropped)
}

// receive runs on subscriber i's reader goroutine for every message.
func (fo *fanout) receive(i int, sub *fsub, m client.Message) {
	now := fo.now()
	if m.Offset != 0 {
		if m.Offset <= sub.last.Load() {
			sub.dups.Add(1)
			return
		}
		sub.last.Store(m.Offset)
	}
	sub.got.Add(1)
	sub.topic.deliv.add(i, 1)
	sent, _, ok := parsePayload(m.Data)
	if !ok {
		fo.foreign.Add(1)
		return
	}
	if int64(sent) >= fo.from.Load() && int64(sent) < fo.to.Load() {
		fo.hist.record(i, now-sent)
	}
}

func (fo *fanout) delivered() uint64 {
	var n uint64
	for _, t := range fo.topics {
		n += t.deliv.load()
	}
	return n
}

func (fo *fanout) published() uint64 {
	var n uint64
	for _, t := range fo.topics {
		n += t.published.Load()
	}
	return n
}

// publisher publishes to one topic at a time from its own body buffer.
type publisher struct {
	fo  *fanout
	buf []byte
}

// publish sends one stamped message to t, whose issued count the caller has
// raised. Publishes in flight when the run stops are finished, not cancelled, so
// that every message is either acknowledged and expected or failed and not.
func (p *publisher) publish(ctx context.Context, t *ftopic) { p.publishAt(ctx, t, p.fo.now()) }

// publishAt is publish with the send time to stamp.
func (p *publisher) publishAt(ctx context.Context, t *ftopic, sent time.Duration) {
	fo := p.fo
	b := append(p.buf[:0], t.prefix...)
	n := len(b)
	b = slices.Grow(b, fo.s.Size+1)[:n+fo.s.Size]
	fillPayload(b[n:], sent, t.seq.Add(1))
	b = append(b, '}')
	p.buf = b
	if _, err := fo.a.publish(ctx, b); err != nil {
		t.issued.Add(^uint64(0))
		if ctx.Err() == nil {
			fo.pubErrs.add(errKey(err))
			// A node that refuses publishes would otherwise be hammered in a
			// tight loop.
			time.Sleep(10 * time.Millisecond)
		}
		return
	}
	t.published.Add(1)
}

// reserve counts one more message issued to t if its connected subscribers have
// fewer than window of its messages outstanding on average.
func (t *ftopic) reserve(window uint64) bool {
	for {
		issued, alive := t.issued.Load(), t.alive.Load()
		if alive <= 0 {
			return false
		}
		want, got := issued*uint64(alive), t.deliv.load()
		if want > got && want-got >= window*uint64(alive) {
			return false
		}
		if t.issued.CompareAndSwap(issued, issued+1) {
			return true
		}
	}
}

// maxPublishers bounds the publish calls in flight. Many are needed: each call
// waits for the load generator's scheduler, whose run queue holds the readers of
// thousands of connections at full speed, so one call can take tens of
// milliseconds, and the messages in flight are what lets the node batch.
const maxPublishers = 128

// publishers is how many goroutines publish for T topics with window messages in
// flight each: enough that every message of every window can be in flight.
func publishers(topics, window int) int { return max(1, min(maxPublishers, topics*window)) }

// closedLoop starts publishers that keep each topic at most InFlight messages
// ahead of its deliveries: a topic whose connected subscribers have fewer than
// InFlight of its messages outstanding on average gets the next one. With fewer
// topics than publishers each topic has several; with more, each publisher
// serves every n-th topic.
func (fo *fanout) closedLoop(ctx context.Context, stop <-chan struct{}, wg *sync.WaitGroup) {
	n := publishers(len(fo.topics), fo.s.InFlight)
	window := uint64(fo.s.InFlight)
	for w := range n {
		var own []*ftopic
		if len(fo.topics) < n {
			own = []*ftopic{fo.topics[w%len(fo.topics)]}
		} else {
			for k := w; k < len(fo.topics); k += n {
				own = append(own, fo.topics[k])
			}
		}
		wg.Go(func() {
			p := &publisher{fo: fo}
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				sent := false
				for _, t := range own {
					if t.reserve(window) {
						p.publish(ctx, t)
						sent = true
					}
				}
				if !sent {
					// Deliveries of InFlight messages take far longer than this at
					// any size worth measuring, so the window stays full.
					time.Sleep(100 * time.Microsecond)
				}
			}
		})
	}
}

// paced starts publishers that publish s.Rate messages per second in all, round
// robin over the topics, on a schedule fixed from the start, so that a late
// publish is followed by quicker ones rather than lowering the rate. The send
// time stamped in each payload is the schedule's, not the moment a publisher got
// to it, so that a publisher held up does not hide the wait from the latency.
func (fo *fanout) paced(ctx context.Context, stop <-chan struct{}, wg *sync.WaitGroup) {
	type task struct {
		t    *ftopic
		when time.Duration
	}
	tasks := make(chan task, maxPublishers)
	for range maxPublishers {
		wg.Go(func() {
			p := &publisher{fo: fo}
			for tk := range tasks {
				tk.t.issued.Add(1)
				p.publishAt(ctx, tk.t, tk.when)
			}
		})
	}
	wg.Go(func() {
		defer close(tasks)
		start := fo.now()
		period := time.Duration(float64(time.Second) / fo.s.Rate)
		timer := time.NewTimer(0)
		defer timer.Stop()
		for sent := uint64(0); ; {
			now := fo.now()
			for ; start+time.Duration(sent)*period <= now; sent++ {
				select {
				case tasks <- task{fo.topics[sent%uint64(len(fo.topics))], start + time.Duration(sent)*period}:
				case <-stop:
					return
				case <-ctx.Done():
					return
				}
			}
			timer.Reset(start + time.Duration(sent)*period - fo.now())
			select {
			case <-timer.C:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	})
}

// drain waits, after publishing stopped, until every connected subscriber has
// every acknowledged message, or deliveries stop making progress for 2 s (30 s
// at most): whatever is missing then is lost.
func (fo *fanout) drain(ctx context.Context, log *slog.Logger) {
	const stall, limit = 2 * time.Second, 30 * time.Second
	started := time.Now()
	last, lastAt := fo.delivered(), time.Now()
	for {
		complete := true
		for i := range fo.subs {
			sub := &fo.subs[i]
			if sub.state.Load() == subAlive && sub.got.Load() < sub.topic.published.Load() {
				complete = false
				break
			}
		}
		if complete {
			return
		}
		if d := fo.delivered(); d != last {
			last, lastAt = d, time.Now()
		}
		if time.Since(lastAt) > stall || time.Since(started) > limit {
			log.Warn("bench: deliveries stopped before every subscriber had every message")
			return
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

// counter is a sum spread over cache lines, so that thousands of reader
// goroutines on different cores can add to it without contending for one line.
type counter struct {
	cells [counterCells]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

const counterCells = 64

func (c *counter) add(i int, d uint64) { c.cells[i%counterCells].n.Add(d) }

func (c *counter) load() uint64 {
	var n uint64
	for i := range c.cells {
		n += c.cells[i].n.Load()
	}
	return n
}
