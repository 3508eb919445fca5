package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/protocol"
)

// The load every scenario runs.
const (
	players     = 300
	topics      = 10
	topicsEach  = 2   // subscriptions per player: about 60 subscribers a topic
	publishRate = 500 // messages a second, over all topics
	// maxInFlight caps the publishes waiting for an answer; a tick past it is
	// recorded as skipped rather than piling up goroutines.
	maxInFlight = 1024
)

func topicName(i int) string { return "chat." + strconv.Itoa(i) }

// variants spreads the players over both transports and both codecs.
var variants = []struct {
	tcp   bool
	codec protocol.Codec
}{
	{false, protocol.CodecJSON},
	{false, protocol.CodecProto},
	{true, protocol.CodecJSON},
	{true, protocol.CodecProto},
}

// event is one thing a subscription's handlers saw, in order.
type event struct {
	at     time.Duration // since the run's origin
	notice bool          // OnUnrecovered, rather than a message
	pos    client.Position
	since  client.Position // notice only
	seq    int             // the publish that carried the message; -1 if unreadable
}

// stream is one subscription of one player: what it was told, in order.
type stream struct {
	player, topic int

	mu sync.Mutex
	// Guarded by mu.
	start  client.Position // the subscription's position when it began
	cur    client.Position // the last position delivered or announced
	events []event
}

func (s *stream) message(origin time.Time, m client.Message) {
	e := event{at: time.Since(origin), pos: client.Position{Offset: m.Offset, Epoch: m.Epoch}, seq: seqOf(m.Data)}
	s.mu.Lock()
	s.events = append(s.events, e)
	s.cur = e.pos
	s.mu.Unlock()
}

func (s *stream) unrecovered(origin time.Time, since, now client.Position) {
	s.mu.Lock()
	s.events = append(s.events, event{at: time.Since(origin), notice: true, pos: now, since: since, seq: -1})
	s.cur = now
	s.mu.Unlock()
}

func (s *stream) position() client.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// record is a copy of what a stream saw, for check.
type record struct {
	player, topic int
	start         client.Position
	events        []event
}

func (s *stream) record() record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return record{player: s.player, topic: s.topic, start: s.start, events: slices.Clone(s.events)}
}

// player is one client and its subscriptions.
type player struct {
	id      int
	c       *client.Client
	streams []*stream

	reconnects atomic.Int64
	mu         sync.Mutex
	// Guarded by mu.
	failures []string // OnFail and failed resubscriptions
	drops    []string // OnDisconnect causes
}

func (p *player) fail(format string, args ...any) {
	p.mu.Lock()
	p.failures = append(p.failures, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

// dialPlayers connects the players, player i to node i%3 with the other nodes
// as fallbacks (in alternating order, so a lost node's players spread over
// the rest), and subscribes each to its topics. The clients are closed when
// the test ends, before the nodes stop.
func dialPlayers(t testing.TB, nodes []*node, origin time.Time) []*player {
	t.Helper()
	ps := make([]*player, players)
	var wg sync.WaitGroup
	errs := make(chan error, players)
	sem := make(chan struct{}, 32)
	for i := range ps {
		p := &player{id: i}
		ps[i] = p
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := p.start(nodes, origin); err != nil {
				errs <- fmt.Errorf("player %d: %w", p.id, err)
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range ps {
			if p.c != nil {
				wg.Go(func() { p.c.Close() })
			}
		}
		wg.Wait()
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ps
}

func (p *player) start(nodes []*node, origin time.Time) error {
	v := variants[p.id%len(variants)]
	url := func(n *node) string {
		if v.tcp {
			return n.tcp
		}
		return n.ws
	}
	home := p.id % len(nodes)
	cfg := client.Config{
		URL:   url(nodes[home]),
		Codec: v.codec,
		User:  fmt.Sprintf("player-%d", p.id),
		// Redials go to the other nodes only when the home node is lost; allow
		// several rounds of all three addresses.
		MaxRetries:  20,
		OnReconnect: func() { p.reconnects.Add(1) },
		OnDisconnect: func(err error) {
			p.mu.Lock()
			p.drops = append(p.drops, fmt.Sprintf("+%.2fs %v", time.Since(origin).Seconds(), err))
			p.mu.Unlock()
		},
		OnFail: func(err error) { p.fail("client gave up: %v", err) },
	}
	for k := 1; k < len(nodes); k++ {
		step := k
		if (p.id/len(nodes))%2 == 1 {
			step = len(nodes) - k
		}
		cfg.URLs = append(cfg.URLs, url(nodes[(home+step)%len(nodes)]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	p.c = c
	// Two distinct topics per player, the second one's distance varying with
	// the player, so that every topic has subscribers on every node, transport
	// and codec.
	first := p.id % topics
	for k := range topicsEach {
		topic := (first + k*(1+(p.id/topics)%(topics-1))) % topics
		s := &stream{player: p.id, topic: topic}
		sub, err := c.Subscribe(ctx, topicName(topic), func(m client.Message) { s.message(origin, m) },
			client.OnUnrecovered(func(since, now client.Position) { s.unrecovered(origin, since, now) }),
			client.OnError(func(err error) { p.fail("resubscribe %s: %v", topicName(topic), err) }))
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", topicName(topic), err)
		}
		s.mu.Lock()
		s.start, s.cur = sub.Position, sub.Position
		s.mu.Unlock()
		p.streams = append(p.streams, s)
	}
	return nil
}

// adminHTTP is the publisher's HTTP client: enough idle connections per node
// that 500 publishes a second reuse them.
var adminHTTP = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 5 * time.Second}

// pubRecord is the outcome of one publish.
type pubRecord struct {
	topic      int
	start, end time.Duration // since the run's origin
	done       bool
	ok         bool
	pos        client.Position
	err        string
}

// publisher publishes publishRate messages a second, round robin over the
// topics and over its nodes' admin APIs, each carrying its sequence number,
// and records every outcome.
type publisher struct {
	origin  time.Time
	http    http.Client
	targets atomic.Pointer[[]string] // admin base URLs
	sem     chan struct{}
	stop    chan struct{}
	done    chan struct{}
	flight  sync.WaitGroup

	attempted atomic.Int64
	mu        sync.Mutex
	recs      []pubRecord // Guarded by mu; index = sequence number.
}

func startPublisher(t testing.TB, nodes []*node, origin time.Time) *publisher {
	p := &publisher{origin: origin, sem: make(chan struct{}, maxInFlight),
		stop: make(chan struct{}), done: make(chan struct{}),
		// Longer than a node takes to fail a publish (brokerTimeout), so the
		// answer, not our impatience, decides the outcome.
		http: http.Client{Transport: adminHTTP, Timeout: 5 * brokerTimeout}}
	p.use(nodes...)
	go p.run()
	t.Cleanup(p.finish)
	return p
}

// use sets the nodes publishes go to from now on.
func (p *publisher) use(nodes ...*node) {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.admin
	}
	p.targets.Store(&urls)
}

func (p *publisher) run() {
	defer close(p.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	began := time.Now()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		// Catch up on whatever the ticks fell behind, so the rate holds on a
		// loaded machine.
		due := int64(time.Since(began).Seconds() * publishRate)
		for p.attempted.Load() < due {
			p.publishNext()
		}
	}
}

func (p *publisher) publishNext() {
	seq := int(p.attempted.Load())
	topic := seq % topics
	rec := pubRecord{topic: topic, start: time.Since(p.origin)}
	p.mu.Lock()
	p.recs = append(p.recs, rec)
	p.mu.Unlock()
	p.attempted.Add(1)
	select {
	case p.sem <- struct{}{}:
	default:
		p.record(seq, false, client.Position{}, "skipped: too many publishes in flight")
		return
	}
	targets := *p.targets.Load()
	target := targets[seq%len(targets)]
	p.flight.Add(1)
	go func() {
		defer p.flight.Done()
		defer func() { <-p.sem }()
		pos, err := p.publish(target, topicName(topic), seq)
		if err != nil {
			p.record(seq, false, client.Position{}, err.Error())
			return
		}
		p.record(seq, true, pos, "")
	}()
}

func (p *publisher) publish(admin, topic string, seq int) (client.Position, error) {
	body, _ := json.Marshal(map[string]any{"topic": topic, "data": json.RawMessage(payload(seq))})
	resp, err := p.http.Post(admin+"/api/publish", "application/json", bytes.NewReader(body))
	if err != nil {
		return client.Position{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
		Error  string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return client.Position{}, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return client.Position{}, fmt.Errorf("status %d: %s", resp.StatusCode, out.Error)
	}
	return client.Position{Offset: out.Offset, Epoch: out.Epoch}, nil
}

func (p *publisher) record(seq int, ok bool, pos client.Position, err string) {
	end := time.Since(p.origin)
	p.mu.Lock()
	r := &p.recs[seq]
	r.done, r.ok, r.pos, r.err, r.end = true, ok, pos, err, end
	p.mu.Unlock()
}

// waitAttempted returns once n more publishes than at start were attempted:
// the publisher's clock, which paces each phase of a scenario.
func (p *publisher) waitAttempted(t testing.TB, n int) {
	t.Helper()
	want := p.attempted.Load() + int64(n)
	// The rate sets how long this takes; the deadline only catches a stuck
	// publisher.
	if !eventually(func() bool { return p.attempted.Load() >= want }) {
		t.Fatalf("publisher stuck at %d publishes, waiting for %d", p.attempted.Load(), want)
	}
}

// finish stops publishing and waits for every publish in flight to be
// answered. It may be called more than once.
func (p *publisher) finish() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	p.flight.Wait()
}

// records returns every outcome, once finish returned.
func (p *publisher) records() []pubRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pubRecord(nil), p.recs...)
}

// payload carries a publish's sequence number, as compact JSON that both
// codecs deliver unchanged.
func payload(seq int) []byte { return fmt.Appendf(nil, `{"seq":%d}`, seq) }

// seqOf reads the sequence number back, -1 if data is not a payload.
func seqOf(data []byte) int {
	rest, ok := bytes.CutPrefix(data, []byte(`{"seq":`))
	if !ok {
		return -1
	}
	rest, ok = bytes.CutSuffix(rest, []byte(`}`))
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(string(rest))
	if err != nil {
		return -1
	}
	return n
}
