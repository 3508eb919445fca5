package hub

import (
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// TestLingerCoalesces: on a conflated map with a flush delay, a neighbour's
// moves wait and leave in one write holding only the newest position; a frame
// that cannot wait takes what waits along at once.
func TestLingerCoalesces(t *testing.T) {
	const delay = 800 * time.Millisecond
	h := mapHub(t, map[string]MapConfig{"w": {Width: 1000, Height: 1000, Interest: true,
		InterestRadius: 100, Conflate: true, FlushDelay: delay}})
	a, b := addRec(h, 1), addRec(h, 2)
	for _, p := range []struct {
		s recSession
		x float64
	}{{a, 100}, {b, 150}} {
		if err := h.Place(p.s.Session, "w", p.x, 100, 1); err != nil {
			t.Fatal(err)
		}
	}
	a.conn.wait(t, "a sees b enter", func(fs []*protocol.Envelope) bool {
		return len(fs) > 0 && fs[len(fs)-1].Op == protocol.Op_OP_ENTER
	})
	a.conn.take()
	a.conn.mu.Lock()
	a.conn.writes = 0
	a.conn.mu.Unlock()

	start := time.Now()
	for i := range 5 {
		if err := h.Place(b.Session, "w", 151+float64(i), 100, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	b.conn.wait(t, "b's answers", func(fs []*protocol.Envelope) bool {
		n := 0
		for _, f := range fs {
			if f.Op == protocol.Op_OP_MOVED && f.Id >= 10 {
				n++
			}
		}
		return n == 5
	})
	a.conn.wait(t, "b's newest position at a", func(fs []*protocol.Envelope) bool { return len(fs) > 0 })
	if waited := time.Since(start); waited < delay/2 {
		t.Errorf("a was written to %s after the moves, before the flush delay", waited)
	}
	fs := a.conn.take()
	if len(fs) != 1 || fs[0].Entity != b.ID || fs[0].X != 155 {
		t.Fatalf("a got %v, want one update of b at x=155", fs)
	}
	a.conn.mu.Lock()
	writes := a.conn.writes
	a.conn.mu.Unlock()
	if writes != 1 {
		t.Errorf("%d writes to a, want 1", writes)
	}

	// A push to a does not wait, and b's pending move goes with it.
	if err := h.Place(b.Session, "w", 160, 100, 20); err != nil {
		t.Fatal(err)
	}
	b.conn.wait(t, "b's answer", func(fs []*protocol.Envelope) bool {
		return len(fs) > 0 && fs[len(fs)-1].Id == 20
	})
	start = time.Now()
	h.Send(a.Session, session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Kind: protocol.Kind_KIND_PUSH, Data: []byte(`1`)}))
	a.conn.wait(t, "the push and the move", func(fs []*protocol.Envelope) bool { return len(fs) == 2 })
	if waited := time.Since(start); waited >= delay {
		t.Errorf("the push waited %s, as long as the flush delay", waited)
	}
	if fs := a.conn.take(); fs[0].X != 160 || fs[1].Kind != protocol.Kind_KIND_PUSH {
		t.Fatalf("a got %v, want b's move then the push", fs)
	}
}
