package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/brokertest"
	"github.com/heraldgg/herald/internal/broker/redis"
	"github.com/heraldgg/herald/internal/broker/redis/redistest"
)

// wait bounds every condition a fault test waits for.
const wait = 15 * time.Second

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func start(t testing.TB, b *redis.Broker) *brokertest.Recorder {
	t.Helper()
	rec := brokertest.NewRecorder()
	if err := b.Start(ctxT(t, 10*time.Second), rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return rec
}

func publish(t testing.TB, b *redis.Broker, topic string, data string) broker.Position {
	t.Helper()
	pos, err := b.Publish(ctxT(t, 5*time.Second), topic, []byte(data), broker.PublishOptions{})
	if err != nil {
		t.Fatalf("publish %q: %v", data, err)
	}
	return pos
}

// publishEventually retries until a publish succeeds, as a client would while
// Redis comes back; every failure must be ErrUnavailable.
func publishEventually(t testing.TB, b *redis.Broker, topic, data string) broker.Position {
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

func TestRestartWithoutPersistenceStartsNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	sub := newBroker(t, testConfig(srv), "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "restart.volatile"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	var before broker.Position
	for i := 1; i <= 5; i++ {
		before = publish(t, pub, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "5 deliveries", func() bool { return len(rec.Publications(topic)) == 5 })

	srv.Kill()
	_, err := pub.Publish(ctxT(t, time.Second), topic, []byte("lost"), broker.PublishOptions{})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish with Redis down: %v, want ErrUnavailable", err)
	}
	srv.Restart()

	after := publishEventually(t, pub, topic, "after")
	if after.Epoch == before.Epoch || after.Offset != 1 {
		t.Fatalf("after restart without persistence got %+v, before %+v: want a new epoch at offset 1", after, before)
	}
	res, err := pub.History(ctxT(t, 5*time.Second), topic, broker.HistoryRequest{Since: &before})
	if err != nil {
		t.Fatal(err)
	}
	if res.Recovered || res.Position != after {
		t.Fatalf("history since %+v = recovered %v at %+v; want not recovered at %+v", before, res.Recovered, res.Position, after)
	}
	brokertest.Eventually(t, wait, "the new epoch's publication", func() bool {
		pubs := rec.Publications(topic)
		return len(pubs) == 6 && pubs[5].Epoch == after.Epoch
	})
	checkStream(t, rec.Publications(topic))
}

func TestRestartWithPersistenceKeepsEpoch(t *testing.T) {
	srv := redistest.Start(t, redistest.Persistent())
	sub := newBroker(t, testConfig(srv), "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "restart.durable"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	var before broker.Position
	for i := 1; i <= 5; i++ {
		before = publish(t, pub, topic, fmt.Sprint(i))
	}
	srv.Kill()
	srv.Restart()

	after := publishEventually(t, pub, topic, "6")
	if after.Epoch != before.Epoch || after.Offset != before.Offset+1 {
		t.Fatalf("after restart with appendonly got %+v, before %+v: want the same epoch, next offset", after, before)
	}
	since := broker.Position{Offset: 3, Epoch: before.Epoch}
	res, err := pub.History(ctxT(t, 5*time.Second), topic, broker.HistoryRequest{Since: &since})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered || len(res.Publications) != 3 || res.Publications[0].Offset != 4 {
		t.Fatalf("history since 3: recovered %v, %d publications", res.Recovered, len(res.Publications))
	}
	brokertest.Eventually(t, wait, "6 deliveries", func() bool { return len(rec.Publications(topic)) == 6 })
	checkStream(t, rec.Publications(topic))
}

// TestFrozenRedis freezes Redis for 3 s while publishing: every publish either
// fails with ErrUnavailable or succeeds and is delivered, and the subscriber's
// probe notices the dead Pub/Sub link and remakes it.
func TestFrozenRedis(t *testing.T) {
	srv := redistest.Start(t)
	sub := newBroker(t, testConfig(srv), "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "frozen"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		ok     = make(map[uint64]bool)
		failed int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			pos, err := pub.Publish(ctx, topic, []byte(fmt.Sprint(i)), broker.PublishOptions{})
			cancel()
			mu.Lock()
			if err == nil {
				ok[pos.Offset] = true
			} else {
				if !errors.Is(err, broker.ErrUnavailable) {
					t.Errorf("publish failed without ErrUnavailable: %v", err)
				}
				failed++
			}
			mu.Unlock()
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(ok) }
	brokertest.Eventually(t, wait, "publishes before the freeze", func() bool { return count() >= 5 })

	srv.Stop()
	time.Sleep(3 * time.Second) // the fault itself, not a wait for a condition
	srv.Cont()
	resumed := count()
	brokertest.Eventually(t, wait, "publishes after the freeze", func() bool { return count() >= resumed+10 })
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if failed == 0 {
		t.Error("no publish failed during a 3 s freeze with 1 s deadlines")
	}
	brokertest.Eventually(t, wait, "every acknowledged publish delivered", func() bool {
		got := make(map[uint64]bool)
		for _, p := range rec.Publications(topic) {
			got[p.Offset] = true
		}
		for off := range ok {
			if !got[off] {
				return false
			}
		}
		return true
	})
	pubs := rec.Publications(topic)
	checkStream(t, pubs)
	if extra := len(pubs) - len(ok); extra > 0 {
		// Only a reply lost after the script ran makes a failed publish take
		// effect; the script's deadline keeps that window to the margin.
		t.Logf("%d publications delivered whose publish reported failure", extra)
	}
	if st := sub.Stats(); st.ProbeFailures == 0 || st.Reconnects == 0 {
		t.Errorf("subscriber stats after a 3 s freeze: %+v; want a probe failure and a reconnect", st)
	}
	t.Logf("%d published, %d failed, subscriber stats %+v", len(ok), failed, sub.Stats())
}

// TestPubSubKilled kills every Pub/Sub connection: the subscriber reconnects
// after its backoff and delivers what was published meanwhile from the stream,
// in order, without gaps or repeats.
func TestPubSubKilled(t *testing.T) {
	srv := redistest.Start(t)
	cfg := testConfig(srv)
	cfg.ReconnectWait = 600 * time.Millisecond // at least 300 ms without a connection
	sub := newBroker(t, cfg, "sub")
	rec := start(t, sub)
	pub := newBroker(t, testConfig(srv), "pub")
	start(t, pub)
	const topic = "killed"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		publish(t, pub, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "3 deliveries", func() bool { return len(rec.Publications(topic)) == 3 })

	if _, err := srv.Do(ctxT(t, 5*time.Second), "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 13; i++ {
		publish(t, pub, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "13 deliveries", func() bool { return len(rec.Publications(topic)) >= 13 })
	pubs := rec.Publications(topic)
	checkStream(t, pubs)
	if len(pubs) != 13 {
		t.Fatalf("%d deliveries, want 13", len(pubs))
	}
	if st := sub.Stats(); st.Reconnects == 0 || st.Filled == 0 {
		t.Errorf("subscriber stats %+v; want a reconnect and publications filled from the stream", st)
	}
}

func TestExpiredHistoryStartsNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	cfg := testConfig(srv)
	cfg.HistoryTTL = 100 * time.Millisecond
	b := newBroker(t, cfg, "n")
	start(t, b)
	first := publish(t, b, "expiring", "x")
	brokertest.Eventually(t, wait, "the topic to expire", func() bool {
		res, err := b.History(ctxT(t, 5*time.Second), "expiring", broker.HistoryRequest{Since: &first})
		return err == nil && !res.Recovered && res.Position.Epoch != first.Epoch
	})
}

func TestEvictedStreamStartsNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	start(t, b)
	first := publish(t, b, "evicted", "x")
	// As if maxmemory eviction took the stream and left the offset.
	if _, err := srv.Do(ctxT(t, 5*time.Second), "DEL", "herald:{evicted}:h"); err != nil {
		t.Fatal(err)
	}
	next := publish(t, b, "evicted", "y")
	if next.Epoch == first.Epoch || next.Offset != 1 {
		t.Fatalf("after losing the stream got %+v, before %+v: want a new epoch at offset 1", next, first)
	}
}

func TestSendNodeToUnknownNode(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	start(t, b)
	err := b.SendNode(ctxT(t, 5*time.Second), "nobody", []byte("x"))
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("SendNode to an unknown node: %v, want ErrUnavailable", err)
	}
}

func TestStartWithoutRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	b := newBroker(t, testConfig(srv), "n")
	err := b.Start(ctxT(t, 5*time.Second), brokertest.NewRecorder())
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Start with Redis down: %v, want ErrUnavailable", err)
	}
}

func TestSubscribeWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	rec := start(t, b)
	srv.Kill()
	if err := b.Subscribe(ctxT(t, 300*time.Millisecond), "down"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("subscribe with Redis down: %v, want ErrUnavailable", err)
	}
	srv.Restart()
	// Subscribe waits for the Pub/Sub connection to come back.
	if err := b.Subscribe(ctxT(t, wait), "down"); err != nil {
		t.Fatal(err)
	}
	pos := publishEventually(t, b, "down", "x")
	brokertest.Eventually(t, wait, "delivery after the restart", func() bool {
		pubs := rec.Publications("down")
		return len(pubs) == 1 && pubs[0].Offset == pos.Offset
	})
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	srv := redistest.Start(t)
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
	// Both travel on one connection, in order: once "kept" arrives, "left" would have.
	publish(t, b, "kept", "x")
	brokertest.Eventually(t, wait, "the later publication", func() bool { return len(rec.Publications("kept")) == 1 })
	if n := len(rec.Publications("left")); n != 1 {
		t.Fatalf("%d deliveries on an unsubscribed topic, want 1", n)
	}
}

// TestReadLongerThanHistorySize has a node with a larger HistorySize publish
// while the subscriber, with a smaller one, is disconnected: the subscriber
// reads the missed publications in several parts and skips none.
func TestReadLongerThanHistorySize(t *testing.T) {
	srv := redistest.Start(t)
	subCfg := testConfig(srv)
	subCfg.ReconnectWait = 600 * time.Millisecond
	sub := newBroker(t, subCfg, "sub")
	rec := start(t, sub)
	pubCfg := testConfig(srv)
	pubCfg.HistorySize = 500
	pub := newBroker(t, pubCfg, "pub")
	start(t, pub)
	const topic = "long"
	if err := sub.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	publish(t, pub, topic, "first")
	brokertest.Eventually(t, wait, "the first delivery", func() bool { return len(rec.Publications(topic)) == 1 })
	if _, err := srv.Do(ctxT(t, 5*time.Second), "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
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
	brokertest.Eventually(t, wait, "every delivery", func() bool { return len(rec.Publications(topic)) >= n+1 })
	pubs := rec.Publications(topic)
	checkStream(t, pubs)
	if st := sub.Stats(); len(pubs) != n+1 || st.Jumps != 0 || st.Filled <= uint64(subCfg.HistorySize) {
		t.Fatalf("%d deliveries, stats %+v; want %d, more than one read's worth filled, no jumps", len(pubs), st, n+1)
	}
}

// TestRollbackCounted rolls a topic's offset back under its epoch, as a Redis
// that lost acknowledged writes would (RDB snapshots, appendfsync everysec),
// and checks that the node's stream read after a reconnect reports it.
func TestRollbackCounted(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	rec := start(t, b)
	const topic = "rollback"
	if err := b.Subscribe(ctxT(t, 5*time.Second), topic); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		publish(t, b, topic, fmt.Sprint(i))
	}
	brokertest.Eventually(t, wait, "5 deliveries", func() bool { return len(rec.Publications(topic)) == 5 })

	ctx := ctxT(t, 5*time.Second)
	if _, err := srv.Do(ctx, "HSET", "herald:{"+topic+"}:m", "o", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, wait, "the rollback counted", func() bool { return b.Stats().Rollbacks == 1 })
}
