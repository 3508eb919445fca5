package hub

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/hub/aoi"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
)

// The world: 10,000 entities on a 10,000 × 10,000 map, each moving at
// 10 Hz and seen by everyone within 100.
const (
	worldEntities = 10000
	worldSide     = 10000.0
	worldRadius   = 100.0
	worldHz       = 10
)

type world struct {
	h    *Hub
	ss   []*session.Session
	x, y []float64
	rng  *rand.Rand
	// placed counts the moves handed to the map; seq numbers them.
	placed, seq uint64
	sampled     map[int]*latConn
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	h := mapHub(tb, map[string]MapConfig{"w": {Width: worldSide, Height: worldSide, CellSize: worldRadius,
		Interest: true, InterestRadius: worldRadius, Conflate: true}})
	w := &world{h: h, rng: rand.New(rand.NewPCG(7, 7)), sampled: map[int]*latConn{}}
	for i := range worldEntities {
		codec := protocol.Codec(i % 2)
		kind := transport.Kind(i / 2 % 2)
		var conn session.Conn = &sinkConn{}
		if i%100 == 0 {
			c := &latConn{sent: map[uint64]time.Time{}}
			w.sampled[i] = c
			conn, codec, kind = c, protocol.CodecProto, transport.TCP
		}
		s := session.New(session.Config{}, "e"+strconv.Itoa(i), uint64(i), "", codec, session.Variant(kind, codec), conn)
		h.Add(s)
		w.ss = append(w.ss, s)
		w.x = append(w.x, w.rng.Float64()*worldSide)
		w.y = append(w.y, w.rng.Float64()*worldSide)
		if err := h.Place(s, "w", w.x[i], w.y[i], 0); err != nil {
			tb.Fatal(err)
		}
		w.placed++
	}
	w.settle(tb)
	return w
}

// tick moves every entity a step of up to 10 units (a brisk walk at 10 Hz),
// spreading the moves evenly over period (0: all at once).
func (w *world) tick(tb testing.TB, period time.Duration) {
	const slots = 100
	start := time.Now()
	for i, s := range w.ss {
		if period > 0 && i%(worldEntities/slots) == 0 {
			time.Sleep(time.Until(start.Add(period * time.Duration(i/(worldEntities/slots)) / slots)))
		}
		w.x[i] = math.Min(math.Max(w.x[i]+w.rng.Float64()*20-10, 0), worldSide-1)
		w.y[i] = math.Min(math.Max(w.y[i]+w.rng.Float64()*20-10, 0), worldSide-1)
		w.seq++
		if c := w.sampled[i]; c != nil {
			c.mu.Lock()
			c.sent[w.seq] = time.Now()
			c.mu.Unlock()
		}
		if err := w.h.Place(s, "w", w.x[i], w.y[i], w.seq); err != nil {
			tb.Fatal(err)
		}
		w.placed++
	}
	if period > 0 {
		time.Sleep(time.Until(start.Add(period)))
	}
}

// settle waits until the map's worker has handled every move and each shard has
// queued every frame it was handed: the shards' inboxes are FIFO, so a call
// that returns from each shard comes after them.
func (w *world) settle(tb testing.TB) {
	m := w.h.maps["w"]
	for m.moves.Load() < w.placed {
		runtime.Gosched()
	}
	for _, sh := range w.h.shards {
		if err := sh.call(context.Background(), func(*shard) error { return nil }); err != nil {
			tb.Fatal(err)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latConn decodes the frames a sampled session receives (TCP, Protobuf) and
// records, for each answer to its own move, how long after the move was made
// it was written: the time an update takes through the map's worker and the
// shard to the socket, which its neighbours' copies share.
type latConn struct {
	sinkConn
	mu    sync.Mutex
	sent  map[uint64]time.Time // move id → when it was made
	lats  []time.Duration
	frame []byte
}

func (c *latConn) Write(b []byte) error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frame = append(c.frame, b...)
	for len(c.frame) >= 4 {
		n := int(binary.BigEndian.Uint32(c.frame))
		if len(c.frame) < 4+n {
			break
		}
		var env protocol.Envelope
		if protocol.CodecProto.Decode(c.frame[4:4+n], &env) == nil && env.Op == protocol.Op_OP_MOVED {
			if t, ok := c.sent[env.Id]; ok {
				c.lats = append(c.lats, now.Sub(t))
				delete(c.sent, env.Id)
			}
		}
		c.frame = c.frame[4+n:]
	}
	return nil
}

// BenchmarkWorld runs the world in process (sessions whose connection
// takes every write at once). "capacity" moves everyone as fast as one
// goroutine can hand the moves over and reports updates and deliveries per
// second and the cores used. "10Hz" makes each entity move ten times a second,
// spread evenly over each 100 ms as independent clients would (100,000
// updates/s), and reports the latency from a move to its frame being written,
// sampled on 1% of the entities.
func BenchmarkWorld(b *testing.B) {
	w := newWorld(b)
	b.Run("capacity", func(b *testing.B) {
		before, cpu, start := w.h.Stats().Delivered, cpuTime(), time.Now()
		for b.Loop() {
			w.tick(b, 0)
		}
		w.settle(b)
		secs := time.Since(start).Seconds()
		b.ReportMetric(float64(b.N*worldEntities)/secs, "updates/s")
		b.ReportMetric(float64(w.h.Stats().Delivered-before)/secs, "deliveries/s")
		b.ReportMetric((cpuTime()-cpu).Seconds()/secs, "cores")
	})
	b.Run("10Hz", func(b *testing.B) {
		for _, c := range w.sampled {
			c.mu.Lock()
			c.lats = c.lats[:0]
			c.mu.Unlock()
		}
		before, cpu, start := w.h.Stats().Delivered, cpuTime(), time.Now()
		for b.Loop() {
			w.tick(b, time.Second/worldHz)
		}
		w.settle(b)
		secs := time.Since(start).Seconds()
		var lats []time.Duration
		for _, c := range w.sampled {
			c.mu.Lock()
			lats = append(lats, c.lats...)
			c.mu.Unlock()
		}
		slices.Sort(lats)
		ms := func(q float64) float64 {
			return float64(lats[int(q*float64(len(lats)-1))].Microseconds()) / 1000
		}
		b.ReportMetric(ms(0.5), "p50-ms")
		b.ReportMetric(ms(0.99), "p99-ms")
		b.ReportMetric(ms(1), "max-ms")
		b.ReportMetric(float64(b.N*worldEntities)/secs, "updates/s")
		b.ReportMetric(float64(w.h.Stats().Delivered-before)/secs, "deliveries/s")
		b.ReportMetric((cpuTime()-cpu).Seconds()/secs, "cores")
	})
}

// BenchmarkGridOwnership measures the choice the package doc explains: one grid
// per map owned by one worker, against one grid per map in every shard holding
// that shard's sessions. Both run on one goroutine here, so the figure is the
// CPU work per move of an entity in the world, interest events
// included; the shard hand-offs are a ring push each. A per-shard grid must
// show every move to every shard (any of them may hold a neighbour), which
// costs two circle queries per other shard, while the owner makes one diff and
// one query and hands each recipient's frame to its shard.
func BenchmarkGridOwnership(b *testing.B) {
	cfg := aoi.Config{Width: worldSide, Height: worldSide, CellSize: worldRadius}
	rng := rand.New(rand.NewPCG(3, 3))
	xs, ys := make([]float64, worldEntities), make([]float64, worldEntities)
	for i := range xs {
		xs[i], ys[i] = rng.Float64()*worldSide, rng.Float64()*worldSide
	}
	step := func(i int) (float64, float64) {
		xs[i] = math.Min(math.Max(xs[i]+rng.Float64()*20-10, 0), worldSide-1)
		ys[i] = math.Min(math.Max(ys[i]+rng.Float64()*20-10, 0), worldSide-1)
		return xs[i], ys[i]
	}
	b.Run("owner", func(b *testing.B) {
		g, _ := aoi.New(cfg)
		for i := range xs {
			_ = g.Insert(uint64(i), xs[i], ys[i])
		}
		r := newRing[item](1 << 16)
		var entered, left, near []uint64
		i := 0
		for b.Loop() {
			id := i % worldEntities
			x, y := step(id)
			entered, left, _ = g.MoveDiff(uint64(id), x, y, worldRadius, entered[:0], left[:0])
			near = g.AppendCircle(near[:0], x, y, worldRadius)
			for range len(near) + 2*len(entered) + 2*len(left) {
				r.push(item{})
				r.pop()
			}
			i++
		}
	})
	for _, shards := range []int{2, 8, 32} {
		b.Run("per-shard/"+strconv.Itoa(shards), func(b *testing.B) {
			grids := make([]*aoi.Grid, shards)
			for k := range grids {
				grids[k], _ = aoi.New(cfg)
			}
			for i := range xs {
				_ = grids[i%shards].Insert(uint64(i), xs[i], ys[i])
			}
			r := newRing[item](1 << 16)
			var entered, left, before, after []uint64
			i := 0
			for b.Loop() {
				id := i % worldEntities
				ox, oy := xs[id], ys[id]
				x, y := step(id)
				for k, g := range grids {
					r.push(item{})
					r.pop()
					if k == id%shards {
						entered, left, _ = g.MoveDiff(uint64(id), x, y, worldRadius, entered[:0], left[:0])
					}
					before = g.AppendCircle(before[:0], ox, oy, worldRadius)
					after = g.AppendCircle(after[:0], x, y, worldRadius)
				}
				i++
			}
		})
	}
}
