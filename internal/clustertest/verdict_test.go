package clustertest

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
)

// TestCheck feeds check hand-made runs, so that a scenario passing means the
// promises held rather than that the checker saw nothing.
func TestCheck(t *testing.T) {
	e1 := func(o uint64) client.Position { return client.Position{Offset: o, Epoch: "one"} }
	e2 := func(o uint64) client.Position { return client.Position{Offset: o, Epoch: "two"} }
	ok := func(pos client.Position, at time.Duration) pubRecord {
		return pubRecord{start: at, end: at, done: true, ok: true, pos: pos}
	}
	// Topic 0: four publishes in epoch one, a failure, two in epoch two.
	recs := []pubRecord{
		ok(e1(1), 1*time.Second), ok(e1(2), 2*time.Second), ok(e1(3), 3*time.Second), ok(e1(4), 4*time.Second),
		{start: 5 * time.Second, end: 6 * time.Second, done: true, err: "status 503: broker unavailable"},
		ok(e2(1), 7*time.Second), ok(e2(2), 8*time.Second),
	}
	msg := func(seq int) event { return event{at: recs[seq].end, pos: recs[seq].pos, seq: seq} }
	gap := func(since, now client.Position) event {
		return event{at: 5 * time.Second, notice: true, since: since, pos: now, seq: -1}
	}
	for _, tc := range []struct {
		name     string
		recs     []pubRecord
		events   []event
		problems []string // a substring of each expected problem, in order
		excused  int
	}{
		{name: "everything", events: []event{msg(0), msg(1), msg(2), msg(3), msg(5), msg(6)}},
		{
			name:     "silent gap",
			events:   []event{msg(0), msg(1), msg(3), msg(5), msg(6)},
			problems: []string{"silent gap: offsets 3–3", "publish 2 succeeded"},
		},
		{
			name:     "duplicate",
			events:   []event{msg(0), msg(1), msg(1), msg(2), msg(3), msg(5), msg(6)},
			problems: []string{"duplicate: offset 2 after 2"},
		},
		{
			name:    "gap with notice",
			events:  []event{msg(0), gap(e1(1), e1(3)), msg(3), msg(5), msg(6)},
			excused: 2,
		},
		{
			name:    "new epoch tells",
			events:  []event{msg(0), msg(1), msg(5), msg(6)},
			excused: 2,
		},
		{
			name:     "new epoch must start at 1",
			events:   []event{msg(0), msg(1), msg(2), msg(3), msg(6)},
			problems: []string{"new epoch two began at offset 2", "publish 5 succeeded"},
		},
		{
			name:     "old epoch after the new",
			events:   []event{msg(0), msg(1), msg(2), msg(5), msg(3), msg(6)},
			problems: []string{"epoch one came back", "new epoch two began at offset 2"},
		},
		{
			name:     "notice from elsewhere",
			events:   []event{msg(0), gap(e1(2), e1(3)), msg(3), msg(5), msg(6)},
			problems: []string{"OnUnrecovered since"},
			excused:  2,
		},
		{
			name:     "lost at the end",
			events:   []event{msg(0), msg(1), msg(2), msg(3), msg(5)},
			problems: []string{"publish 6 succeeded"},
		},
		{
			name:     "offset given twice",
			recs:     append(append([]pubRecord(nil), recs...), ok(e2(2), 9*time.Second)),
			events:   []event{msg(0), msg(1), msg(2), msg(3), msg(5), msg(6)},
			problems: []string{"publishes 6 (8.000s–8.000s) and 7", "publish 7 succeeded"},
		},
		{
			name:     "delivered elsewhere than published",
			events:   []event{msg(0), msg(1), {at: time.Second, pos: e1(3), seq: 1}, msg(3), msg(5), msg(6)},
			problems: []string{"publish 1 returned offset 2", "publish 2 succeeded"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := tc.recs
			if rs == nil {
				rs = recs
			}
			v := check(rs, []record{{topic: 0, start: e1(0), events: tc.events}})
			if got, want := strings.Join(v.problems, "\n"), len(tc.problems); len(v.problems) != want {
				t.Fatalf("%d problems, want %d:\n%s", len(v.problems), want, got)
			}
			for i, want := range tc.problems {
				if !strings.Contains(v.problems[i], want) {
					t.Errorf("problem %d: %q, want it to say %q", i, v.problems[i], want)
				}
			}
			if v.excused != tc.excused {
				t.Errorf("excused %d, want %d", v.excused, tc.excused)
			}
			if v.failed != 1 {
				t.Errorf("failed %d, want 1", v.failed)
			}
		})
	}
}
