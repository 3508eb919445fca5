package server_test

import (
	"bufio"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/server"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// walker is one raw TCP Protobuf client of BenchmarkRegionSystem: it moves at
// 10 Hz and counts what it receives.
type walker struct {
	nc      net.Conn
	session string
	x, y    float64
	rng     *rand.Rand

	mu   sync.Mutex
	sent map[uint64]time.Time // move id → when it was sent
	lats []time.Duration

	received atomic.Uint64 // frames other than its own answers
	answered atomic.Uint64
	errors   atomic.Uint64
	lastErr  atomic.Pointer[string]
}

func dialWalker(b *testing.B, addr string, seed uint64) *walker {
	b.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = nc.Close() })
	w := &walker{nc: nc, rng: rand.New(rand.NewPCG(seed, 1)), sent: map[uint64]time.Time{}}
	w.write(&protocol.Envelope{Op: protocol.Op_OP_CONNECT, Id: 1})
	br := bufio.NewReader(nc)
	p, err := protocol.ReadTCPFrame(br, nil, 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	var env protocol.Envelope
	if err := protocol.CodecProto.Decode(p, &env); err != nil || env.Op != protocol.Op_OP_CONNECTED {
		b.Fatalf("connect: %v %v", &env, err)
	}
	w.session = env.Session
	go w.read(br)
	return w
}

func (w *walker) write(env *protocol.Envelope) {
	p, _ := protocol.CodecProto.Append(nil, env)
	_, _ = w.nc.Write(protocol.AppendTCPFrame(nil, p))
}

func (w *walker) read(br *bufio.Reader) {
	var buf []byte
	var env protocol.Envelope
	for {
		p, err := protocol.ReadTCPFrame(br, buf, 1<<20)
		if err != nil {
			return
		}
		buf = p[:0]
		env.Reset()
		if protocol.CodecProto.Decode(p, &env) != nil {
			continue
		}
		if env.Op == protocol.Op_OP_MOVED && env.Id != 0 {
			now := time.Now()
			w.mu.Lock()
			if t, ok := w.sent[env.Id]; ok {
				w.lats = append(w.lats, now.Sub(t))
				delete(w.sent, env.Id)
			}
			w.mu.Unlock()
			w.answered.Add(1)
			continue
		}
		if env.Op == protocol.Op_OP_ERROR {
			w.errors.Add(1)
			if w.lastErr.Load() == nil {
				e := env.Reason
				w.lastErr.Store(&e)
			}
		}
		w.received.Add(1)
	}
}

// move sends the move numbered id: a step of up to 10 units.
func (w *walker) move(id uint64, side float64) {
	w.x = math.Min(math.Max(w.x+w.rng.Float64()*20-10, 0), side-1)
	w.y = math.Min(math.Max(w.y+w.rng.Float64()*20-10, 0), side-1)
	w.mu.Lock()
	w.sent[id] = time.Now()
	w.mu.Unlock()
	w.write(&protocol.Envelope{Op: protocol.Op_OP_MOVE, Id: id, Map: "world", X: w.x, Y: w.y})
}

// BenchmarkRegionSystem is the world through real sockets: entities
// on a map at the density (10,000 on 10,000 × 10,000), interest radius
// 100, each a raw TCP Protobuf client sending move at 10 Hz with its phase
// spread over the 100 ms. Each b.N is one tick (100 ms). It reports the moves
// and deliveries per second, the latency from a client writing a move to it
// reading the answer, which its neighbours' updates share (they leave the
// map's worker together), and the CPU of the whole process: the node and the
// clients, which do as much work again decoding what they receive.
//
// HERALD_BENCH_ENTITIES sets the number of clients (default 2000),
// HERALD_BENCH_FLUSH_DELAY the map's flush_delay (default 0s). To measure
// a node in a process of its own, so that "cores" is the node's alone, start
// it with a map "world" of at least 10,000 × 10,000 with client_move, interest
// (radius 100) and conflate, and set HERALD_BENCH_TCP (host:port) and
// HERALD_BENCH_ADMIN (http://host:port).
func BenchmarkRegionSystem(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_ENTITIES")); err == nil && v > 0 {
		n = v
	}
	side := 10000 * math.Sqrt(float64(n)/10000)
	// HERALD_BENCH_FLUSH_DELAY sets the map's flush_delay (a duration) for the
	// in-process node.
	delay, _ := time.ParseDuration(os.Getenv("HERALD_BENCH_FLUSH_DELAY"))
	addr, admin := os.Getenv("HERALD_BENCH_TCP"), os.Getenv("HERALD_BENCH_ADMIN")
	if addr == "" {
		node := servertest.Start(b, func(c *config.Config) {
			c.Hub.Maps = map[string]hub.MapConfig{"world": {Width: side, Height: side, ClientMove: true,
				Interest: true, InterestRadius: 100, Conflate: true, FlushDelay: delay}}
			c.Gateway.MessageRate = 50
		})
		addr, admin = strings.TrimPrefix(node.TCP, "tcp://"), node.Admin
	}
	// The stats requests' keep-alive connection would outlive the benchmark.
	b.Cleanup(http.DefaultClient.CloseIdleConnections)
	stats := func() server.Stats {
		var st server.Stats
		resp, err := http.Get(admin + "/api/stats")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			b.Fatal(err)
		}
		return st
	}
	ws := make([]*walker, n)
	for i := range ws {
		ws[i] = dialWalker(b, addr, uint64(i))
		ws[i].x, ws[i].y = ws[i].rng.Float64()*side, ws[i].rng.Float64()*side
	}
	var id atomic.Uint64
	id.Store(1)
	for _, w := range ws {
		w.move(id.Add(1), side)
	}
	servertest.Eventually(b, 30*time.Second, "everyone placed", func() bool { return answered(b, ws) == n })
	for _, w := range ws {
		w.mu.Lock()
		w.lats = w.lats[:0]
		w.mu.Unlock()
		w.received.Store(0)
		w.answered.Store(0)
	}

	const period = 100 * time.Millisecond
	before := stats()
	moves := 0
	b.ResetTimer()
	start := time.Now()
	for tick := 0; b.Loop(); tick++ {
		tickStart := start.Add(time.Duration(tick) * period)
		for i, w := range ws {
			if d := time.Until(tickStart.Add(period * time.Duration(i) / time.Duration(n))); d > 0 {
				time.Sleep(d)
			}
			w.move(id.Add(1), side)
			moves++
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	servertest.Eventually(b, 30*time.Second, "every move answered", func() bool { return answered(b, ws) == moves })
	after := stats()
	var lats []time.Duration
	received := 0
	for _, w := range ws {
		w.mu.Lock()
		lats = append(lats, w.lats...)
		w.mu.Unlock()
		received += int(w.received.Load())
	}
	slices.Sort(lats)
	q := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))].Microseconds()) / 1000 }
	secs := elapsed.Seconds()
	b.ReportMetric(float64(moves)/secs, "updates/s")
	b.ReportMetric(float64(received)/secs, "deliveries/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric((after.CPUSeconds-before.CPUSeconds)/secs, "cores")
	b.ReportMetric(float64(after.Conflated-before.Conflated)/secs, "conflated/s")
}

// answered counts the answers the walkers have read, failing on an error frame.
func answered(tb testing.TB, ws []*walker) int {
	tb.Helper()
	total := 0
	for _, w := range ws {
		if e := w.lastErr.Load(); e != nil {
			tb.Fatalf("error frame: %s", *e)
		}
		total += int(w.answered.Load())
	}
	return total
}
