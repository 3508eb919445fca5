package clustertest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldgg/herald/client"
)

// verdict is what check found in one run.
type verdict struct {
	// Problems breaks a promise; each is one line.
	problems []string

	attempted, succeeded, failed, skipped int
	failedDelivered                       int // publishes that failed for the caller but were delivered
	deliveries                            int // messages handed to subscribers
	expected                              int // successful publishes × their topic's subscribers
	arrived                               int // of expected, delivered
	excused                               int // of expected, not delivered but covered by a notice
	notices                               int // OnUnrecovered calls
	epochSwitches                         int // subscriptions that saw a new epoch begin
	firstFail, lastFail                   time.Duration
	errorKinds                            map[string]int
}

func (v *verdict) problem(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

// place is a position in the order of a topic's whole history: epochs in the
// order they appeared, offsets within each.
type place struct {
	epoch  int
	offset uint64
}

func (a place) less(b place) bool {
	return a.epoch < b.epoch || a.epoch == b.epoch && a.offset < b.offset
}

// span is the places in (from, to].
type span struct{ from, to place }

// timeline orders one topic's epochs by when they were first seen, by the
// publisher or by any subscriber: a new epoch only begins after the outage
// that ended the last one, so first sightings are seconds apart.
type timeline map[string]int

func newTimelines(recs []pubRecord, streams []record) []timeline {
	type sighting struct {
		epoch string
		at    time.Duration
	}
	first := make([]map[string]time.Duration, topics)
	for i := range first {
		first[i] = make(map[string]time.Duration)
	}
	see := func(topic int, epoch string, at time.Duration) {
		if epoch == "" {
			return
		}
		if old, ok := first[topic][epoch]; !ok || at < old {
			first[topic][epoch] = at
		}
	}
	for _, r := range recs {
		if r.ok {
			see(r.topic, r.pos.Epoch, r.end)
		}
	}
	for _, s := range streams {
		see(s.topic, s.start.Epoch, 0)
		for _, e := range s.events {
			see(s.topic, e.pos.Epoch, e.at)
		}
	}
	tls := make([]timeline, topics)
	for i, m := range first {
		var ss []sighting
		for e, at := range m {
			ss = append(ss, sighting{e, at})
		}
		slices.SortFunc(ss, func(a, b sighting) int { return cmp.Compare(a.at, b.at) })
		tls[i] = make(timeline, len(ss))
		for k, s := range ss {
			tls[i][s.epoch] = k
		}
	}
	return tls
}

func (tl timeline) place(p client.Position) place {
	return place{epoch: tl[p.Epoch], offset: p.Offset}
}

// maxReported bounds the problems listed per kind, so that one broken run
// does not print a million lines.
const maxReported = 10

// check holds the run to Herald's promises (see the package documentation).
// It is called once the publisher finished and the subscribers drained.
func check(recs []pubRecord, streams []record) verdict {
	v := verdict{attempted: len(recs), errorKinds: make(map[string]int), firstFail: -1}
	tls := newTimelines(recs, streams)

	// Every successful publish has a place of its own.
	type key struct {
		topic int
		pos   client.Position
	}
	bySeq := make(map[key]int)
	published := make([][]int, topics) // per topic, successful sequence numbers
	for seq, r := range recs {
		switch {
		case r.ok:
			v.succeeded++
			k := key{r.topic, r.pos}
			if other, dup := bySeq[k]; dup {
				o := recs[other]
				v.problem("publishes %d (%.3fs–%.3fs) and %d (%.3fs–%.3fs) both succeeded at %s offset %d epoch %s",
					other, o.start.Seconds(), o.end.Seconds(), seq, r.start.Seconds(), r.end.Seconds(), topicName(r.topic), r.pos.Offset, r.pos.Epoch)
			}
			bySeq[k] = seq
			published[r.topic] = append(published[r.topic], seq)
		case !r.done:
			v.problem("publish %d never answered", seq)
		case r.err == "skipped: too many publishes in flight":
			v.skipped++
		default:
			v.failed++
			v.errorKinds[errorKind(r.err)]++
			if v.firstFail < 0 || r.start < v.firstFail {
				v.firstFail = r.start
			}
			v.lastFail = max(v.lastFail, r.end)
		}
	}

	reported := make(map[string]int)
	report := func(kind, format string, args ...any) {
		if reported[kind]++; reported[kind] <= maxReported {
			v.problem(format, args...)
		}
	}
	for _, s := range streams {
		tl := tls[s.topic]
		name := fmt.Sprintf("player %d %s", s.player, topicName(s.topic))
		cur := s.start
		var excused []span
		delivered := make(map[int]bool, len(s.events)) // by sequence number
		for _, e := range s.events {
			if e.notice {
				v.notices++
				if e.since != cur {
					report("since", "%s: OnUnrecovered since %+v, but the last delivered was %+v", name, e.since, cur)
				}
				excused = append(excused, span{tl.place(cur), tl.place(e.pos)})
				cur = e.pos
				continue
			}
			v.deliveries++
			p, c := tl.place(e.pos), tl.place(cur)
			switch {
			case p.epoch == c.epoch && p.offset == c.offset+1:
			case p.epoch == c.epoch && p.offset <= c.offset:
				report("dup", "%s: duplicate: offset %d after %d in epoch %s", name, e.pos.Offset, cur.Offset, e.pos.Epoch)
				continue
			case p.epoch == c.epoch:
				report("gap", "%s: silent gap: offsets %d–%d of epoch %s skipped", name, cur.Offset+1, e.pos.Offset-1, e.pos.Epoch)
			case p.epoch < c.epoch:
				report("back", "%s: epoch %s came back after %s", name, e.pos.Epoch, cur.Epoch)
			default:
				// A new epoch tells the client the history it held is gone; the
				// new one must then be delivered from its beginning.
				v.epochSwitches++
				excused = append(excused, span{c, place{epoch: p.epoch}})
				if e.pos.Offset != 1 {
					report("gap", "%s: new epoch %s began at offset %d", name, e.pos.Epoch, e.pos.Offset)
				}
			}
			cur = e.pos
			delivered[e.seq] = true
			if e.seq < 0 || e.seq >= len(recs) {
				report("data", "%s: message at offset %d carries no publish of this run", name, e.pos.Offset)
				continue
			}
			switch r := recs[e.seq]; {
			case r.topic != s.topic:
				report("data", "%s: offset %d carries publish %d of %s", name, e.pos.Offset, e.seq, topicName(r.topic))
			case r.ok && r.pos != e.pos:
				report("data", "%s: publish %d returned offset %d epoch %s, delivered at offset %d epoch %s",
					name, e.seq, r.pos.Offset, r.pos.Epoch, e.pos.Offset, e.pos.Epoch)
			}
		}
		start := tl.place(s.start)
		for _, seq := range published[s.topic] {
			p := tl.place(recs[seq].pos)
			if !start.less(p) {
				continue // before the subscription began
			}
			v.expected++
			if delivered[seq] {
				v.arrived++
				continue
			}
			if slices.ContainsFunc(excused, func(x span) bool { return x.from.less(p) && !x.to.less(p) }) {
				v.excused++
				continue
			}
			report("lost", "%s: publish %d succeeded at offset %d epoch %s and was never delivered, with no notice",
				name, seq, recs[seq].pos.Offset, recs[seq].pos.Epoch)
		}
	}
	for kind, n := range reported {
		if n > maxReported {
			v.problem("… and %d more problems of the kind %q", n-maxReported, kind)
		}
	}
	v.failedDelivered = countFailedDelivered(recs, streams)
	return v
}

// countFailedDelivered counts the failed publishes some subscriber received.
func countFailedDelivered(recs []pubRecord, streams []record) int {
	seen := make(map[int]bool)
	for _, s := range streams {
		for _, e := range s.events {
			if !e.notice && e.seq >= 0 && e.seq < len(recs) && !recs[e.seq].ok {
				seen[e.seq] = true
			}
		}
	}
	return len(seen)
}

// errorKind shortens a publish error to its cause, without addresses and
// timings, so that failures can be counted by cause.
func errorKind(err string) string {
	for _, k := range []string{"connection refused", "status 503", "Client.Timeout", "EOF", "connection reset"} {
		if strings.Contains(err, k) {
			return k
		}
	}
	if len(err) > 60 {
		return err[:60]
	}
	return err
}
