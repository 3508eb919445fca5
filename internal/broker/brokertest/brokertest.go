// Package brokertest is the conformance suite every broker implementation passes,
// against its real backend.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/broker"
)

// Factory makes brokers for the suite.
type Factory struct {
	// New returns a broker for the node named node, not yet started. Brokers made
	// by one Factory share a backend when Shared is true. New registers cleanup.
	New func(t testing.TB, node string) broker.Broker
	// Shared reports that two brokers from New reach each other (a cluster backend).
	Shared bool
	// HistorySize is the history the brokers keep per topic.
	HistorySize int
}

// Recorder is a broker.Handler that keeps what it was given.
type Recorder struct {
	mu       sync.Mutex
	pubs     map[string][]broker.Publication
	controls [][]byte
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{pubs: make(map[string][]broker.Publication)} }

// HandlePublication records pub.
func (r *Recorder) HandlePublication(pub broker.Publication) {
	r.mu.Lock()
	r.pubs[pub.Topic] = append(r.pubs[pub.Topic], pub)
	r.mu.Unlock()
}

// HandleControl records data.
func (r *Recorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.controls = append(r.controls, append([]byte(nil), data...))
	r.mu.Unlock()
}

// Publications returns a copy of what topic received.
func (r *Recorder) Publications(topic string) []broker.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Publication(nil), r.pubs[topic]...)
}

// Controls returns a copy of the control messages received.
func (r *Recorder) Controls() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.controls...)
}

// Eventually waits up to d for cond, failing t otherwise.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func start(t testing.TB, f Factory, node string) (broker.Broker, *Recorder) {
	t.Helper()
	b := f.New(t, node)
	rec := NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx, rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, rec
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// Run runs the conformance suite.
func Run(t *testing.T, f Factory) {
	t.Run("OffsetsIncreaseByOne", func(t *testing.T) {
		b, rec := start(t, f, "n1")
		topic := uniqueTopic(t)
		if err := b.Subscribe(ctx(t), topic); err != nil {
			t.Fatal(err)
		}
		var epoch string
		for i := 1; i <= 20; i++ {
			pos, err := b.Publish(ctx(t), topic, []byte(fmt.Sprint(i)), broker.PublishOptions{User: "u"})
			if err != nil {
				t.Fatal(err)
			}
			if pos.Offset != uint64(i) {
				t.Fatalf("publish %d got offset %d", i, pos.Offset)
			}
			if epoch == "" {
				epoch = pos.Epoch
			} else if pos.Epoch != epoch {
				t.Fatalf("epoch changed from %q to %q", epoch, pos.Epoch)
			}
		}
		Eventually(t, 5*time.Second, "20 deliveries", func() bool { return len(rec.Publications(topic)) == 20 })
		for i, p := range rec.Publications(topic) {
			if p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprint(i+1) || p.Epoch != epoch || p.User != "u" {
				t.Fatalf("delivery %d = %+v", i, p)
			}
		}
	})

	t.Run("ConcurrentPublishesGetDistinctOffsets", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		topic := uniqueTopic(t)
		const workers, each = 8, 25
		var mu sync.Mutex
		seen := make(map[uint64]bool)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					pos, err := b.Publish(ctx(t), topic, []byte("x"), broker.PublishOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[pos.Offset] {
						t.Errorf("offset %d given twice", pos.Offset)
					}
					seen[pos.Offset] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for i := uint64(1); i <= workers*each; i++ {
			if !seen[i] {
				t.Fatalf("offset %d never given", i)
			}
		}
	})

	t.Run("History", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		topic := uniqueTopic(t)
		res, err := b.History(ctx(t), topic, broker.HistoryRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Position.Offset != 0 || len(res.Publications) != 0 {
			t.Fatalf("empty topic: %+v", res)
		}
		var last broker.Position
		for i := 1; i <= 10; i++ {
			if last, err = b.Publish(ctx(t), topic, []byte(fmt.Sprint(i)), broker.PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cases := []struct {
			name      string
			since     broker.Position
			want      []uint64
			recovered bool
		}{
			{"from start", broker.Position{Offset: 0, Epoch: last.Epoch}, seq(1, 10), true},
			{"middle", broker.Position{Offset: 6, Epoch: last.Epoch}, seq(7, 10), true},
			{"up to date", broker.Position{Offset: 10, Epoch: last.Epoch}, nil, true},
			{"other epoch", broker.Position{Offset: 3, Epoch: "not-" + last.Epoch}, nil, false},
			{"ahead", broker.Position{Offset: 11, Epoch: last.Epoch}, nil, false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				since := tc.since
				res, err := b.History(ctx(t), topic, broker.HistoryRequest{Since: &since})
				if err != nil {
					t.Fatal(err)
				}
				if res.Recovered != tc.recovered {
					t.Errorf("recovered = %v, want %v", res.Recovered, tc.recovered)
				}
				if res.Position != last {
					t.Errorf("position = %+v, want %+v", res.Position, last)
				}
				if tc.recovered {
					if got := offsets(res.Publications); fmt.Sprint(got) != fmt.Sprint(tc.want) {
						t.Errorf("offsets = %v, want %v", got, tc.want)
					}
				}
			})
		}
	})

	t.Run("HistoryEviction", func(t *testing.T) {
		if f.HistorySize <= 0 {
			t.Skip("history size unknown")
		}
		b, _ := start(t, f, "n1")
		topic := uniqueTopic(t)
		n := f.HistorySize + 5
		var last broker.Position
		var err error
		for i := 1; i <= n; i++ {
			if last, err = b.Publish(ctx(t), topic, []byte("x"), broker.PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		since := broker.Position{Offset: 1, Epoch: last.Epoch}
		res, err := b.History(ctx(t), topic, broker.HistoryRequest{Since: &since})
		if err != nil {
			t.Fatal(err)
		}
		if res.Recovered {
			t.Errorf("recovered across evicted history")
		}
		since = broker.Position{Offset: uint64(n - f.HistorySize), Epoch: last.Epoch}
		res, err = b.History(ctx(t), topic, broker.HistoryRequest{Since: &since})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Recovered || len(res.Publications) != f.HistorySize {
			t.Errorf("oldest retained: recovered=%v with %d publications", res.Recovered, len(res.Publications))
		}
		res, err = b.History(ctx(t), topic, broker.HistoryRequest{Since: &since, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if res.Recovered || len(res.Publications) != 3 {
			t.Errorf("limit 3: recovered=%v with %d publications", res.Recovered, len(res.Publications))
		}
	})

	t.Run("Broadcast", func(t *testing.T) {
		b, rec := start(t, f, "n1")
		if err := b.Broadcast(ctx(t), []byte("hello")); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 5*time.Second, "control delivery", func() bool { return len(rec.Controls()) >= 1 })
		if got := string(rec.Controls()[0]); got != "hello" {
			t.Errorf("control = %q", got)
		}
		if err := b.SendNode(ctx(t), "n1", []byte("direct")); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 5*time.Second, "direct delivery", func() bool { return len(rec.Controls()) >= 2 })
	})

	t.Run("ClosedRefuses", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx(t), uniqueTopic(t), []byte("x"), broker.PublishOptions{}); err == nil {
			t.Error("publish after close succeeded")
		} else if !errors.Is(err, broker.ErrClosed) && !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("publish after close: %v", err)
		}
	})

	runPresence(t, f)

	if !f.Shared {
		return
	}
	t.Run("CrossNode", func(t *testing.T) {
		a, recA := start(t, f, "a")
		b, recB := start(t, f, "b")
		topic := uniqueTopic(t)
		if err := a.Subscribe(ctx(t), topic); err != nil {
			t.Fatal(err)
		}
		// A node that did not subscribe must not receive the topic.
		Eventually(t, 5*time.Second, "subscription to settle", func() bool {
			_, err := b.Publish(ctx(t), topic, []byte("probe"), broker.PublishOptions{})
			return err == nil && len(recA.Publications(topic)) > 0
		})
		pos, err := b.Publish(ctx(t), topic, []byte("x"), broker.PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Probes published while the subscription settled may still be arriving,
		// so wait for this publication's own offset.
		Eventually(t, 5*time.Second, "cross-node delivery", func() bool {
			for _, p := range recA.Publications(topic) {
				if p.Offset == pos.Offset && string(p.Data) == "x" {
					return true
				}
			}
			return false
		})
		if n := len(recB.Publications(topic)); n != 0 {
			t.Errorf("unsubscribed node b received %d publications", n)
		}
		if err := a.Unsubscribe(ctx(t), topic); err != nil {
			t.Fatal(err)
		}
		if err := b.SendNode(ctx(t), "a", []byte("to-a")); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 5*time.Second, "node-directed control", func() bool {
			for _, c := range recA.Controls() {
				if string(c) == "to-a" {
					return true
				}
			}
			return false
		})
		for _, c := range recB.Controls() {
			if string(c) == "to-a" {
				t.Error("node b received a message for node a")
			}
		}
		if err := a.Broadcast(ctx(t), []byte("all")); err != nil {
			t.Fatal(err)
		}
		for _, rec := range []*Recorder{recA, recB} {
			Eventually(t, 5*time.Second, "broadcast on every node", func() bool {
				for _, c := range rec.Controls() {
					if string(c) == "all" {
						return true
					}
				}
				return false
			})
		}
	})
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func offsets(pubs []broker.Publication) []uint64 {
	var out []uint64
	for _, p := range pubs {
		out = append(out, p.Offset)
	}
	return out
}

func uniqueTopic(t testing.TB) string {
	return fmt.Sprintf("test.%d.%s", time.Now().UnixNano(), sanitize(t.Name()))
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
