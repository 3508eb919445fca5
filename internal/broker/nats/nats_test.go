package nats_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/brokertest"
	"github.com/heraldgg/herald/internal/broker/nats"
	"github.com/heraldgg/herald/internal/broker/nats/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every condition a test waits for.
const wait = 15 * time.Second

func testConfig(srv *natstest.Server) nats.Config {
	return nats.Config{
		URL:            srv.URL(),
		HistorySize:    50,
		RequestTimeout: 2 * time.Second,
		DialTimeout:    time.Second,
		ReconnectWait:  50 * time.Millisecond,
		PingInterval:   time.Second,
	}
}

func newBroker(t testing.TB, cfg nats.Config, node string) *nats.Broker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := nats.New(cfg, node, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func start(t testing.TB, b *nats.Broker) *brokertest.Recorder {
	t.Helper()
	rec := brokertest.NewRecorder()
	if err := b.Start(ctxT(t, 10*time.Second), rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return rec
}

func publish(t testing.TB, b *nats.Broker, topic, data string) broker.Position {
	t.Helper()
	pos, err := b.Publish(ctxT(t, 5*time.Second), topic, []byte(data), broker.PublishOptions{})
	if err != nil {
		t.Fatalf("publish %q: %v", data, err)
	}
	return pos
}

// publishEventually retries until a publish succeeds, as a client would while
// the server comes back; every failure must be ErrUnavailable.
func publishEventually(t testing.TB, b *nats.Broker, topic, data string) broker.Position {
	t.Helper()
	var pos broker.Position
	brokertest.Eventually(t, wait, "a publish to succeed", func() bool {
		var err error
		pos, err = b.Publish(ctxT(t, time.Second), topic, []byte(data), broker.PublishOptions{})
		if err != nil && !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("publish failed without ErrUnavailable: %v", err)
		}
		return err == nil
	})
	return pos
}

// checkStream fails t unless pubs run without gaps or repeats: each one follows
// the one before in its epoch, and a new epoch starts at offset 1.
func checkStream(t testing.TB, pubs []broker.Publication) {
	t.Helper()
	for i := 1; i < len(pubs); i++ {
		prev, p := pubs[i-1], pubs[i]
		switch {
		case p.Epoch == prev.Epoch && p.Offset != prev.Offset+1:
			t.Fatalf("delivery %d: offset %d after %d in epoch %s", i, p.Offset, prev.Offset, p.Epoch)
		case p.Epoch != prev.Epoch && p.Offset != 1:
			t.Fatalf("delivery %d: new epoch %s starts at offset %d", i, p.Epoch, p.Offset)
		}
	}
}

func TestConformance(t *testing.T) {
	srv := natstest.Start(t)
	brokertest.Run(t, brokertest.Factory{
		New: func(t testing.TB, node string) broker.Broker {
			return newBroker(t, testConfig(srv), node)
		},
		Shared:      true,
		HistorySize: 50,
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  nats.Config
		node string
	}{
		{"dotted stream", nats.Config{Stream: "a.b"}, "n"},
		{"wildcard prefix", nats.Config{SubjectPrefix: "herald.*"}, "n"},
		{"empty token in prefix", nats.Config{SubjectPrefix: "a..b"}, "n"},
		{"negative history", nats.Config{HistorySize: -1}, "n"},
		{"unknown storage", nats.Config{Storage: "tape"}, "n"},
		{"empty node", nats.Config{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := nats.New(tc.cfg, tc.node, nil); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestTopicsAnyString(t *testing.T) {
	srv := natstest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	rec := start(t, b)
	for _, topic := range []string{"a b", "x.*.>", "ünï/cødé", "..", "$JS.API"} {
		if err := b.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
			t.Fatalf("subscribe %q: %v", topic, err)
		}
		pos := publish(t, b, topic, "x")
		brokertest.Eventually(t, wait, "delivery on "+topic, func() bool { return len(rec.Publications(topic)) == 1 })
		if got := rec.Publications(topic)[0]; got.Offset != pos.Offset || got.Epoch != pos.Epoch {
			t.Fatalf("%q delivered %+v, published %+v", topic, got, pos)
		}
	}
	if _, err := b.Publish(ctxT(t, time.Second), "", nil, broker.PublishOptions{}); !errors.Is(err, broker.ErrBadTopic) {
		t.Fatalf("empty topic: %v", err)
	}
}

// TestServerRestartResumesDelivery restarts the server with its store kept. The
// subscriber reconnects a second after the publisher, so what is published in
// between never reaches it live and must come from history.
func TestServerRestartResumesDelivery(t *testing.T) {
	srv := natstest.Start(t)
	subCfg := testConfig(srv)
	subCfg.ReconnectWait = time.Second
	sub := newBroker(t, subCfg, "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "restart"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	var before broker.Position
	for i := 1; i <= 5; i++ {
		before = publish(t, pub, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "5 deliveries", func() bool { return len(rec.Publications(topic)) == 5 })

	srv.Shutdown()
	if _, err := pub.Publish(ctxT(t, 200*time.Millisecond), topic, []byte("lost"), broker.PublishOptions{}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish with the server down: %v, want ErrUnavailable", err)
	}
	srv.Restart()

	after := publishEventually(t, pub, topic, "6")
	if after.Epoch != before.Epoch || after.Offset != before.Offset+1 {
		t.Fatalf("after a restart with the store kept got %+v, before %+v: want the same epoch, next offset", after, before)
	}
	for i := 7; i <= 10; i++ {
		publish(t, pub, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "10 deliveries", func() bool { return len(rec.Publications(topic)) >= 10 })
	pubs := rec.Publications(topic)
	checkStream(t, pubs)
	if len(pubs) != 10 {
		t.Fatalf("%d deliveries, want 10", len(pubs))
	}
	since := broker.Position{Offset: 3, Epoch: before.Epoch}
	res, err := pub.History(ctxT(t, 5*time.Second), topic, broker.HistoryRequest{Since: &since})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered || len(res.Publications) != 7 {
		t.Fatalf("history since 3: recovered %v with %d publications", res.Recovered, len(res.Publications))
	}
	if st := sub.Stats(); st.Reconnects == 0 || st.Filled == 0 {
		t.Errorf("subscriber stats %+v; want a reconnect and publications filled from history", st)
	}
}

func TestLostStoreStartsNewEpoch(t *testing.T) {
	srv := natstest.Start(t)
	sub := newBroker(t, testConfig(srv), "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "wiped"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	var before broker.Position
	for i := 1; i <= 3; i++ {
		before = publish(t, pub, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "3 deliveries", func() bool { return len(rec.Publications(topic)) == 3 })

	srv.RestartWiped()
	after := publishEventually(t, pub, topic, "new")
	if after.Epoch == before.Epoch || after.Offset != 1 {
		t.Fatalf("after losing the store got %+v, before %+v: want a new epoch at offset 1", after, before)
	}
	res, err := pub.History(ctxT(t, 5*time.Second), topic, broker.HistoryRequest{Since: &before})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovered || res.Position != after {
		t.Fatalf("history since %+v: recovered %v at %+v; want not recovered at %+v", before, res.Recovered, res.Position, after)
	}
	brokertest.Eventually(t, wait, "the new epoch's publication", func() bool {
		pubs := rec.Publications(topic)
		return len(pubs) == 4 && pubs[3].Epoch == after.Epoch
	})
	checkStream(t, rec.Publications(topic))
}

// TestSlowSubscriberFilledFromHistory gives the subscriber room for one
// waiting publication, so a burst overflows it: what was dropped live is read
// from history and delivered in order.
func TestSlowSubscriberFilledFromHistory(t *testing.T) {
	srv := natstest.Start(t)
	cfg := testConfig(srv)
	cfg.DeliveryBuffer = 1
	sub := newBroker(t, cfg, "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "burst"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := pub.Publish(ctxT(t, 5*time.Second), topic, []byte(fmt.Sprint(i)), broker.PublishOptions{})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, wait, fmt.Sprint(n, " deliveries"), func() bool { return len(rec.Publications(topic)) >= n })
	pubs := rec.Publications(topic)
	checkStream(t, pubs)
	if len(pubs) != n {
		t.Fatalf("%d deliveries, want %d", len(pubs), n)
	}
	t.Logf("subscriber stats %+v", sub.Stats())
}

// TestPublishRaceAcrossNodes publishes to one topic from two nodes at once:
// the expected-sequence check makes them take turns, so offsets stay unique
// and contiguous.
func TestPublishRaceAcrossNodes(t *testing.T) {
	srv := natstest.Start(t)
	a := newBroker(t, testConfig(srv), "a")
	start(t, a)
	b := newBroker(t, testConfig(srv), "b")
	start(t, b)
	const topic, each = "race", 30
	offsets := make(chan uint64, 2*each)
	done := make(chan error, 2)
	for _, nb := range []*nats.Broker{a, b} {
		go func() {
			for range each {
				pos, err := nb.Publish(ctxT(t, 5*time.Second), topic, []byte("x"), broker.PublishOptions{})
				if err != nil {
					done <- err
					return
				}
				offsets <- pos.Offset
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	close(offsets)
	seen := make(map[uint64]bool)
	for o := range offsets {
		if seen[o] {
			t.Fatalf("offset %d given twice", o)
		}
		seen[o] = true
	}
	for o := uint64(1); o <= 2*each; o++ {
		if !seen[o] {
			t.Fatalf("offset %d never given", o)
		}
	}
	t.Logf("conflicts: a %d, b %d", a.Stats().Conflicts, b.Stats().Conflicts)
}

func TestStartWithoutServer(t *testing.T) {
	srv := natstest.Start(t)
	srv.Shutdown()
	b := newBroker(t, testConfig(srv), "n")
	if err := b.Start(ctxT(t, 5*time.Second), brokertest.NewRecorder()); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Start with the server down: %v, want ErrUnavailable", err)
	}
}

func TestSendNodeToUnknownNode(t *testing.T) {
	srv := natstest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	start(t, b)
	if err := b.SendNode(ctxT(t, 5*time.Second), "nobody", []byte("x")); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("SendNode to an unknown node: %v, want ErrUnavailable", err)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	srv := natstest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	rec := start(t, b)
	for _, topic := range []string{"left", "kept"} {
		if err := b.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b, "left", "1")
	brokertest.Eventually(t, wait, "delivery before unsubscribing", func() bool { return len(rec.Publications("left")) == 1 })
	if err := b.Unsubscribe(ctxT(t, 5*time.Second), "left"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "left", "2")
	// The stream republishes in the order it stored: once "kept" arrives, "left" would have.
	publish(t, b, "kept", "x")
	brokertest.Eventually(t, wait, "the later publication", func() bool { return len(rec.Publications("kept")) == 1 })
	if n := len(rec.Publications("left")); n != 1 {
		t.Fatalf("%d deliveries on an unsubscribed topic, want 1", n)
	}
}

func TestHistoryOfEmptyTopicFixesEpoch(t *testing.T) {
	srv := natstest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	rec := start(t, b)
	if err := b.Subscribe(ctxT(t, 5*time.Second), "fresh"); err != nil {
		t.Fatal(err)
	}
	res, err := b.History(ctxT(t, 5*time.Second), "fresh", broker.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Position.Offset != 0 || res.Position.Epoch == "" {
		t.Fatalf("empty topic at %+v, want offset 0 in some epoch", res.Position)
	}
	first := publish(t, b, "fresh", "x")
	if first.Offset != 1 || first.Epoch != res.Position.Epoch {
		t.Fatalf("first publication at %+v, want offset 1 in epoch %s", first, res.Position.Epoch)
	}
	since := res.Position
	res, err = b.History(ctxT(t, 5*time.Second), "fresh", broker.HistoryRequest{Since: &since})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered || len(res.Publications) != 1 {
		t.Fatalf("history since the empty position: recovered %v with %d publications", res.Recovered, len(res.Publications))
	}
	brokertest.Eventually(t, wait, "the first publication, not the marker", func() bool {
		pubs := rec.Publications("fresh")
		return len(pubs) == 1 && pubs[0].Offset == 1
	})
}

// BenchmarkPublish measures publishes with the expected-sequence check, to one
// topic (serialized per topic) and spread over many.
func BenchmarkPublish(b *testing.B) {
	srv := natstest.Start(b)
	br := newBroker(b, nats.Config{URL: srv.URL()}, "bench")
	if err := br.Start(context.Background(), brokertest.NewRecorder()); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64)
	for _, spread := range []int{1, 1024} {
		b.Run(fmt.Sprintf("topics=%d", spread), func(b *testing.B) {
			b.SetParallelism(16)
			var n atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					topic := fmt.Sprint("bench.", n.Add(1)%uint64(spread))
					if _, err := br.Publish(context.Background(), topic, data, broker.PublishOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestFetchAcrossBatches has the stream keep more per topic than the
// subscriber's HistorySize (another node configured more): a history read
// takes several batches and skips nothing.
func TestFetchAcrossBatches(t *testing.T) {
	srv := natstest.Start(t)
	subCfg := testConfig(srv)
	subCfg.DeliveryBuffer = 1
	sub := newBroker(t, subCfg, "sub")
	rec := start(t, sub)
	pubCfg := testConfig(srv)
	pubCfg.HistorySize = 500
	pub := newBroker(t, pubCfg, "pub") // starts last, so the stream keeps 500
	start(t, pub)
	const topic = "long"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	const n = 160
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := pub.Publish(ctxT(t, 5*time.Second), topic, []byte(fmt.Sprint(i)), broker.PublishOptions{})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	now, err := sub.History(ctxT(t, 5*time.Second), topic, broker.HistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	since := broker.Position{Offset: 0, Epoch: now.Position.Epoch}
	res, err := sub.History(ctxT(t, 5*time.Second), topic, broker.HistoryRequest{Since: &since, Limit: n})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered || len(res.Publications) != n {
		t.Fatalf("history from the start: recovered %v with %d publications, want %d", res.Recovered, len(res.Publications), n)
	}
	brokertest.Eventually(t, wait, "every delivery", func() bool { return len(rec.Publications(topic)) >= n })
	pubs := rec.Publications(topic)
	checkStream(t, pubs)
	if st := sub.Stats(); len(pubs) != n || st.Jumps != 0 {
		t.Fatalf("%d deliveries, stats %+v; want %d and no jumps", len(pubs), st, n)
	}
}
