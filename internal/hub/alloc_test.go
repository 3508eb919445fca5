package hub

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
)

type nopBroker struct{}

func (nopBroker) Subscribe(context.Context, string) error   { return nil }
func (nopBroker) Unsubscribe(context.Context, string) error { return nil }

// sinkConn takes every write at once, like a socket with room to spare.
type sinkConn struct{ bytes atomic.Int64 }

func (c *sinkConn) Write(b []byte) error                       { c.bytes.Add(int64(len(b))); return nil }
func (c *sinkConn) Buffered() int                              { return 0 }
func (c *sinkConn) Backlogged() bool                           { return false }
func (c *sinkConn) Close(protocol.Code, string, time.Duration) {}
func (c *sinkConn) Abort()                                     {}

// fanOutHub returns a running hub with n sessions subscribed to topic, spread over
// both transports and codecs.
func fanOutHub(tb testing.TB, n int, topic string) *Hub {
	tb.Helper()
	h := New(Config{Shards: 2}, nopBroker{}, time.Hour, slog.New(slog.DiscardHandler))
	h.Start()
	tb.Cleanup(h.Close)
	for i := range n {
		codec := protocol.Codec(i % 2)
		kind := transport.Kind(i / 2 % 2)
		s := session.New(session.Config{}, "s", uint64(i), "", codec, session.Variant(kind, codec), &sinkConn{})
		h.Add(s)
		if err := h.Subscribe(context.Background(), s, topic); err != nil {
			tb.Fatal(err)
		}
		ack := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_SUBSCRIBED, Topic: topic})
		h.CompleteSubscribe(s, topic, ack, nil, 0, "e")
	}
	waitDelivered(h, uint64(n))
	return h
}

func waitDelivered(h *Hub, want uint64) {
	for h.Stats().Delivered < want {
		runtime.Gosched()
	}
}

// TestFanOutAllocations guards "no garbage per recipient": one publication to 2,000
// subscribers may allocate its frame and one encoding per codec and transport, never
// something per subscriber.
func TestFanOutAllocations(t *testing.T) {
	const subscribers = 2000
	h := fanOutHub(t, subscribers, "t")
	offset := uint64(0)
	publish := func() {
		offset++
		before := h.Stats().Delivered
		f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: "t", Offset: offset, Epoch: "e", Data: []byte(`{"x":1}`)})
		f.Offset = offset
		h.Publication("t", f)
		waitDelivered(h, before+subscribers)
	}
	for range 50 { // let queues and scratch buffers reach their working size
		publish()
	}
	allocs := testing.AllocsPerRun(200, publish)
	if perRecipient := allocs / subscribers; perRecipient > 0.01 {
		t.Fatalf("%.1f allocations per publication to %d subscribers (%.3f per recipient)", allocs, subscribers, perRecipient)
	}
	t.Logf("%.1f allocations per publication to %d subscribers", allocs, subscribers)
}

func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := fanOutHub(b, n, "t")
			offset := uint64(0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				offset++
				before := h.Stats().Delivered
				f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: "t", Offset: offset, Epoch: "e", Data: make([]byte, 64)})
				f.Offset = offset
				h.Publication("t", f)
				waitDelivered(h, before+uint64(n))
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
