package track

import (
	"testing"

	"github.com/heraldgg/herald/internal/broker"
)

type recorder struct{ got []broker.Publication }

func (r *recorder) HandlePublication(p broker.Publication) { r.got = append(r.got, p) }
func (r *recorder) HandleControl([]byte)                   {}

// TestSet walks one topic through a gap, its read, a retry and a forget, and
// checks what reaches the handler and which topics wait for a read.
func TestSet(t *testing.T) {
	rec := &recorder{}
	s := NewSet(8)
	s.Handler = rec
	tr := &Track{}
	s.Tracks["a"] = tr
	s.Filled("a", broker.Position{Offset: 1, Epoch: "e"}, nil, false) // baseline
	s.Live("a", pub("e", 2))
	s.Live("a", pub("e", 4)) // 3 is missing: waits, and a read is queued
	s.Live("gone", pub("e", 1))
	if got := names(rec.got); got != "e2 " {
		t.Fatalf("delivered %s, want e2", got)
	}
	select {
	case <-s.Kick:
	default:
		t.Fatal("a gap did not kick the reader")
	}
	if d := s.TakeDirty(); len(d) != 1 || d[0] != "a" {
		t.Fatalf("dirty %v, want [a]", d)
	}
	f := s.Filled("a", broker.Position{Offset: 4, Epoch: "e"}, pubs("e", 3, 4), false)
	if got := names(rec.got); got != "e2 e3 e4 " || f.Filled != 2 || f.Jumped {
		t.Fatalf("after the read: delivered %s, fill %+v", got, f)
	}
	s.Retry("a")
	s.Retry("gone")
	if d := s.TakeDirty(); len(d) != 1 || d[0] != "a" {
		t.Fatalf("retried %v, want [a]", d)
	}
	s.Forget("a", &Track{}) // not a's track: kept
	if s.Tracks["a"] != tr {
		t.Fatal("Forget dropped another track")
	}
	s.MarkDirty("a")
	s.Forget("a", tr)
	if s.Tracks["a"] != nil || len(s.TakeDirty()) != 0 {
		t.Fatal("Forget kept the topic")
	}
}
