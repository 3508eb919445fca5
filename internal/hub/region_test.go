package hub

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
)

// recConn decodes what the hub writes to a TCP Protobuf session, so a test can
// read the frames back in order.
type recConn struct {
	mu      sync.Mutex
	buf     []byte
	frames  []*protocol.Envelope
	writes  int
	arrived chan struct{} // signalled after each write
}

func newRecConn() *recConn { return &recConn{arrived: make(chan struct{}, 1)} }

func (c *recConn) Write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, b...)
	c.writes++
	for len(c.buf) >= 4 {
		n := int(binary.BigEndian.Uint32(c.buf))
		if len(c.buf) < 4+n {
			break
		}
		env := &protocol.Envelope{}
		if err := protocol.CodecProto.Decode(c.buf[4:4+n], env); err != nil {
			panic(err)
		}
		c.frames = append(c.frames, env)
		c.buf = c.buf[4+n:]
	}
	select {
	case c.arrived <- struct{}{}:
	default:
	}
	return nil
}
func (c *recConn) Buffered() int                              { return 0 }
func (c *recConn) Backlogged() bool                           { return false }
func (c *recConn) Close(protocol.Code, string, time.Duration) {}
func (c *recConn) Abort()                                     {}

// take returns the frames received so far and forgets them.
func (c *recConn) take() []*protocol.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.frames
	c.frames = nil
	return out
}

// wait waits until the frames received satisfy ok, for at most 10 seconds.
func (c *recConn) wait(tb testing.TB, what string, ok func([]*protocol.Envelope) bool) {
	tb.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		done := ok(c.frames)
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.arrived:
		case <-deadline.C:
			tb.Fatalf("waited 10s for %s", what)
		}
	}
}

func mapHub(tb testing.TB, maps map[string]MapConfig) *Hub {
	tb.Helper()
	h := New(Config{Shards: 2, Maps: maps}, nopBroker{}, time.Hour, slog.New(slog.DiscardHandler))
	h.Start()
	tb.Cleanup(h.Close)
	return h
}

type recSession struct {
	*session.Session
	conn *recConn
}

func addRec(h *Hub, num uint64) recSession {
	c := newRecConn()
	v := session.Variant(transport.TCP, protocol.CodecProto)
	s := session.New(session.Config{MaxQueueBytes: 64 << 20}, fmt.Sprintf("s%03d", num), num, "u"+strconv.FormatUint(num, 10),
		protocol.CodecProto, v, c)
	h.Add(s)
	return recSession{s, c}
}

// view is what a client learns from enter, leave and moved frames: whom it
// sees on each map, and where. Events of different maps are not ordered with
// each other, so a client keeps one view per map.
type view map[string]map[string][2]float64

// apply folds a session's frames into its view, failing on an event that makes
// no sense (an enter of someone already seen, a leave or an update of someone
// not seen).
func (v view) apply(t *testing.T, who string, frames []*protocol.Envelope) {
	t.Helper()
	for _, f := range frames {
		if f.Op == protocol.Op_OP_MOVED && f.Entity == who {
			continue // the answer to its own move
		}
		m := v[f.Map]
		if m == nil {
			m = map[string][2]float64{}
			v[f.Map] = m
		}
		switch f.Op {
		case protocol.Op_OP_ENTER:
			if _, ok := m[f.Entity]; ok {
				t.Fatalf("%s: enter of %s on %s, already in view", who, f.Entity, f.Map)
			}
			m[f.Entity] = [2]float64{f.X, f.Y}
		case protocol.Op_OP_LEAVE:
			if _, ok := m[f.Entity]; !ok {
				t.Fatalf("%s: leave of %s on %s, not in view", who, f.Entity, f.Map)
			}
			delete(m, f.Entity)
		case protocol.Op_OP_MOVED:
			if _, ok := m[f.Entity]; !ok {
				t.Fatalf("%s: update of %s on %s, not in view", who, f.Entity, f.Map)
			}
			m[f.Entity] = [2]float64{f.X, f.Y}
		}
		if len(m) == 0 {
			delete(v, f.Map)
		}
	}
}

// TestInterestMatchesOracle moves sessions at random over a map, in and out of
// it and off the node, and checks that each session's enter, leave and moved
// frames add up to exactly the sessions a brute-force scan finds within the
// interest radius, at their final positions.
func TestInterestMatchesOracle(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { testInterestOracle(t, seed) })
	}
}

func testInterestOracle(t *testing.T, seed uint64) {
	const (
		n      = 60
		radius = 100.0
		size   = 600.0
		rounds = 60
	)
	h := mapHub(t, map[string]MapConfig{
		"w":     {Width: size, Height: size, CellSize: 70, Interest: true, InterestRadius: radius},
		"other": {Width: size, Height: size, Interest: true, InterestRadius: radius},
	})
	rng := rand.New(rand.NewPCG(seed, 2))
	ss := make([]recSession, n)
	views := make([]view, n)
	type pos struct {
		on   string
		x, y float64
	}
	where := make([]pos, n)
	gone := make([]bool, n)
	for i := range ss {
		ss[i] = addRec(h, uint64(i+1))
		views[i] = view{}
	}
	// Coordinates on a coarse lattice land often exactly on the radius and on
	// cell edges.
	coord := func() float64 { return float64(rng.IntN(int(size/10))) * 10 }
	for round := range rounds {
		for i := range ss {
			if gone[i] {
				continue
			}
			switch r := rng.IntN(200); {
			case r == 0 && round > rounds/2:
				h.Remove(ss[i].Session)
				gone[i] = true
				where[i] = pos{}
			case r < 10:
				if err := h.Place(ss[i].Session, "", 0, 0, 0); err != nil {
					t.Fatal(err)
				}
				where[i] = pos{}
			case r < 20:
				x, y := coord(), coord()
				if err := h.Place(ss[i].Session, "other", x, y, 0); err != nil {
					t.Fatal(err)
				}
				where[i] = pos{"other", x, y}
			case r < 120:
				x, y := coord(), coord()
				if err := h.Place(ss[i].Session, "w", x, y, uint64(round+1)); err != nil {
					t.Fatal(err)
				}
				where[i] = pos{"w", x, y}
			}
		}
	}
	// Barrier: once every connected session has a frame sent after all the moves
	// (the maps' workers hand frames to shards in order), the streams are complete.
	for _, m := range []string{"w", "other"} {
		h.Region(Area{Map: m, Rect: true, MinX: 0, MinY: 0, MaxX: size, MaxY: size}, nil,
			RegionFrame(Area{Map: m}, []byte(`"barrier"`)))
	}
	for i := range ss {
		if gone[i] || where[i].on == "" {
			continue
		}
		waitFor(t, ss[i].conn, func(f *protocol.Envelope) bool { return f.Op == protocol.Op_OP_MSG })
	}
	for i := range ss {
		if !gone[i] {
			h.Send(ss[i].Session, session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_PONG, Id: 999}))
		}
	}
	for i := range ss {
		if gone[i] {
			continue
		}
		waitFor(t, ss[i].conn, func(f *protocol.Envelope) bool { return f.Op == protocol.Op_OP_PONG })
		views[i].apply(t, ss[i].ID, ss[i].conn.take())
	}
	checked := 0
	for i := range ss {
		if gone[i] {
			continue
		}
		want := view{}
		if on := where[i].on; on != "" {
			for j := range ss {
				if j == i || gone[j] || where[j].on != on {
					continue
				}
				dx, dy := where[j].x-where[i].x, where[j].y-where[i].y
				if dx*dx+dy*dy <= radius*radius {
					if want[on] == nil {
						want[on] = map[string][2]float64{}
					}
					want[on][ss[j].ID] = [2]float64{where[j].x, where[j].y}
				}
			}
			checked += len(want[on])
		}
		if fmt.Sprint(views[i]) != fmt.Sprint(want) {
			t.Errorf("%s on %q at (%g, %g): sees %v, want %v", ss[i].ID, where[i].on, where[i].x, where[i].y, views[i], want)
		}
	}
	if checked == 0 {
		t.Fatal("the random world put nobody in anyone's view")
	}
	t.Logf("%d sightings checked", checked)
}

// waitFor waits until c has received a frame matching ok; the frames stay.
func waitFor(tb testing.TB, c *recConn, ok func(*protocol.Envelope) bool) {
	tb.Helper()
	c.wait(tb, "a frame", func(fs []*protocol.Envelope) bool { return slices.ContainsFunc(fs, ok) })
}
