package hub

import (
	"context"
	"math"
	"strconv"
	"testing"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
)

// regionHub returns a running hub whose map "m" (side × side, cells of 100)
// holds n sessions on a square lattice, every one of them also subscribed to
// topic "t", spread over both transports and codecs.
func regionHub(tb testing.TB, n int, side float64) *Hub {
	tb.Helper()
	h := mapHub(tb, map[string]MapConfig{"m": MapConfig{Width: side, Height: side, CellSize: 100}.WithDefaults()})
	for i := range n {
		codec := protocol.Codec(i % 2)
		kind := transport.Kind(i / 2 % 2)
		s := session.New(session.Config{}, "s"+strconv.Itoa(i), uint64(i), "", codec, session.Variant(kind, codec), &sinkConn{})
		h.Add(s)
		if err := h.Subscribe(context.Background(), s, "t"); err != nil {
			tb.Fatal(err)
		}
		h.CompleteSubscribe(s, "t", session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_SUBSCRIBED, Topic: "t"}), nil, 0, "e")
		x, y := latticePos(i, n, side)
		if err := h.Place(s, "m", x, y, 0); err != nil {
			tb.Fatal(err)
		}
	}
	waitDelivered(h, uint64(2*n)) // each session's subscribed and moved frames
	return h
}

// latticePos is where regionHub puts session i of n.
func latticePos(i, n int, side float64) (x, y float64) {
	per := int(math.Ceil(math.Sqrt(float64(n))))
	step := side / float64(per)
	return (float64(i%per) + 0.5) * step, (float64(i/per) + 0.5) * step
}

// everyone is a rectangle over the whole map.
func everyone(side float64) Area {
	return Area{Map: "m", Rect: true, MaxX: side, MaxY: side}
}

// TestRegionAllocations guards "no garbage per recipient" on the region path:
// one broadcast to 2,000 sessions may allocate its frame, its request and one
// encoding per wire variant, never something per recipient.
func TestRegionAllocations(t *testing.T) {
	const n = 2000
	const side = 2000.0
	h := regionHub(t, n, side)
	data := []byte(`{"x":1}`)
	for _, tc := range []struct {
		name string
		area Area
	}{
		{"rect", everyone(side)},
		{"circle", Area{Map: "m", X: side / 2, Y: side / 2, Radius: side}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broadcast := func() {
				before := h.Stats().Delivered
				h.Region(tc.area, nil, RegionFrame(tc.area, data))
				waitDelivered(h, before+n)
			}
			for range 50 { // let queues, scratch slices and inboxes reach their working size
				broadcast()
			}
			allocs := testing.AllocsPerRun(200, broadcast)
			if perRecipient := allocs / n; perRecipient > 0.01 {
				t.Fatalf("%.1f allocations per region broadcast to %d sessions (%.3f per recipient)", allocs, n, perRecipient)
			}
			t.Logf("%.1f allocations per region broadcast to %d sessions", allocs, n)
		})
	}
}

// BenchmarkRegionVsTopic compares a region broadcast with a topic publication
// reaching the same sessions: the price of finding recipients in the grid and
// passing them through the map's worker, against walking a topic's subscriber
// set. "all" reaches every session of the map; "100" reaches the ~100 sessions
// within radius of a point, out of n on the map.
func BenchmarkRegionVsTopic(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		// The lattice spacing is 100, so a circle of radius 560 holds ~100 sessions.
		side := 100 * math.Ceil(math.Sqrt(float64(n)))
		h := regionHub(b, n, side)
		data := make([]byte, 64)
		circle := Area{Map: "m", X: side / 2, Y: side / 2, Radius: 560}
		inCircle := 0
		for i := range n {
			x, y := latticePos(i, n, side)
			if dx, dy := x-circle.X, y-circle.Y; dx*dx+dy*dy <= circle.Radius*circle.Radius {
				inCircle++
			}
		}
		offset := uint64(0) // across runs of the sub-benchmark (-count), or repeats are dropped as duplicates
		b.Run("n="+strconv.Itoa(n)+"/topic-all", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				offset++
				before := h.Stats().Delivered
				f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: "t", Offset: offset, Epoch: "e", Data: data})
				f.Offset = offset
				h.Publication("t", f)
				waitDelivered(h, before+uint64(n))
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
		b.Run("n="+strconv.Itoa(n)+"/region-all", func(b *testing.B) {
			all := everyone(side)
			b.ReportAllocs()
			for b.Loop() {
				before := h.Stats().Delivered
				h.Region(all, nil, RegionFrame(all, data))
				waitDelivered(h, before+uint64(n))
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
		b.Run("n="+strconv.Itoa(n)+"/region-circle", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				before := h.Stats().Delivered
				h.Region(circle, nil, RegionFrame(circle, data))
				waitDelivered(h, before+uint64(inCircle))
			}
			b.ReportMetric(float64(inCircle), "recipients")
			b.ReportMetric(float64(b.N*inCircle)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
