package track

import (
	"fmt"
	"testing"

	"github.com/heraldgg/herald/internal/broker"
)

func pub(epoch string, off uint64) broker.Publication {
	return broker.Publication{Topic: "t", Epoch: epoch, Offset: off}
}

func pubs(epoch string, from, to uint64) []broker.Publication {
	var out []broker.Publication
	for o := from; o <= to; o++ {
		out = append(out, pub(epoch, o))
	}
	return out
}

func names(ps []broker.Publication) string {
	s := ""
	for _, p := range ps {
		s += fmt.Sprintf("%s%d ", p.Epoch, p.Offset)
	}
	return s
}

// step is one event of a track's life and what must come out of it.
type step struct {
	live   *broker.Publication  // a live publication, or
	read   *broker.Position     // a stream read landing with
	pubs   []broker.Publication // these publications, or
	base   *broker.Position     // a baseline
	want   string               // delivered, as names() prints them
	sync   bool                 // whether a read must be queued
	jumped bool                 // for a read: whether delivery skipped offsets
}

func live(p broker.Publication) *broker.Publication { return &p }
func at(epoch string, off uint64) *broker.Position {
	return &broker.Position{Epoch: epoch, Offset: off}
}

func TestTrack(t *testing.T) {
	cases := []struct {
		name  string
		steps []step
	}{
		{"first live sets the position", []step{
			{live: live(pub("a", 7)), want: "a7 "},
			{live: live(pub("a", 8)), want: "a8 "},
		}},
		{"baseline then contiguous", []step{
			{base: at("a", 4)},
			{live: live(pub("a", 4)), want: ""},
			{live: live(pub("a", 5)), want: "a5 "},
		}},
		{"baseline after a delivery is ignored", []step{
			{live: live(pub("a", 5)), want: "a5 "},
			{base: at("a", 9)},
			{live: live(pub("a", 6)), want: "a6 "},
		}},
		{"duplicates dropped", []step{
			{base: at("a", 3)},
			{live: live(pub("a", 2)), want: ""},
			{live: live(pub("a", 3)), want: ""},
		}},
		{"gap waits for the read", []step{
			{base: at("a", 3)},
			{live: live(pub("a", 6)), want: "", sync: true},
			{live: live(pub("a", 7)), want: ""},
			{read: at("a", 6), pubs: pubs("a", 4, 6), want: "a4 a5 a6 a7 "},
			{live: live(pub("a", 8)), want: "a8 "},
		}},
		{"late live message closes the gap", []step{
			{base: at("a", 3)},
			{live: live(pub("a", 5)), want: "", sync: true},
			{live: live(pub("a", 4)), want: "a4 a5 "},
			{read: at("a", 5), pubs: pubs("a", 4, 5), want: ""},
		}},
		{"new epoch from 1 switches at once", []step{
			{base: at("a", 9)},
			{live: live(pub("b", 1)), want: "b1 "},
			{live: live(pub("b", 2)), want: "b2 "},
		}},
		{"new epoch past 1 is read", []step{
			{base: at("a", 9)},
			{live: live(pub("b", 3)), want: "", sync: true},
			{read: at("b", 3), pubs: pubs("b", 1, 3), want: "b1 b2 b3 "},
		}},
		{"reconnect read fills what was missed", []step{
			{live: live(pub("a", 1)), want: "a1 "},
			{read: at("a", 4), pubs: pubs("a", 2, 4), want: "a2 a3 a4 "},
		}},
		{"read of trimmed history jumps", []step{
			{live: live(pub("a", 1)), want: "a1 "},
			{read: at("a", 9), pubs: pubs("a", 5, 9), want: "a5 a6 a7 a8 a9 ", jumped: true},
		}},
		{"read after history lost starts the new epoch", []step{
			{live: live(pub("a", 5)), want: "a5 "},
			{read: at("b", 0), want: ""},
			{live: live(pub("b", 1)), want: "b1 "},
		}},
		{"read on an unknown track is a baseline", []step{
			{read: at("a", 5), pubs: pubs("a", 1, 5), want: ""},
			{live: live(pub("a", 6)), want: "a6 "},
		}},
		{"marker of a first epoch is a position", []step{
			{live: live(pub("a", 0)), want: ""},
			{live: live(pub("a", 1)), want: "a1 "},
		}},
		{"marker of a new epoch switches without delivery", []step{
			{base: at("a", 5)},
			{live: live(pub("b", 0)), want: ""},
			{live: live(pub("b", 1)), want: "b1 "},
		}},
		{"baseline of an empty topic then its first epoch", []step{
			{base: at("", 0)},
			{live: live(pub("a", 1)), want: "a1 "},
		}},
		{"gap left after the read queues another", []step{
			{base: at("a", 1)},
			{live: live(pub("a", 9)), want: "", sync: true},
			{read: at("a", 3), pubs: pubs("a", 2, 3), want: "a2 a3 ", sync: true},
			{read: at("a", 9), pubs: pubs("a", 4, 9), want: "a4 a5 a6 a7 a8 a9 "},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tr Track
			for i, s := range tc.steps {
				var out []broker.Publication
				var sync, jumped bool
				switch {
				case s.live != nil:
					out, sync = tr.Live(*s.live, nil, 8)
				case s.read != nil:
					out, jumped, sync = tr.Filled(*s.read, s.pubs, nil, 8)
				case s.base != nil:
					tr.Baseline(*s.base)
				}
				if got := names(out); got != s.want || sync != s.sync || jumped != s.jumped {
					t.Fatalf("step %d: delivered %q sync %v jumped %v; want %q sync %v jumped %v",
						i, got, sync, jumped, s.want, s.sync, s.jumped)
				}
			}
		})
	}
}

func TestTrackPendingIsBounded(t *testing.T) {
	var tr Track
	tr.Baseline(broker.Position{Epoch: "a", Offset: 0})
	for o := uint64(2); o < 100; o++ {
		tr.Live(pub("a", o), nil, 8)
	}
	if len(tr.pending) != 8 {
		t.Fatalf("pending holds %d, want 8", len(tr.pending))
	}
	out, _, again := tr.Filled(broker.Position{Epoch: "a", Offset: 99}, pubs("a", 1, 99), nil, 8)
	if len(out) != 99 || again {
		t.Fatalf("after the read delivered %d, again %v", len(out), again)
	}
}
