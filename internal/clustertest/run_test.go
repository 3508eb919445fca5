package clustertest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
)

// The phases of a scenario, counted in publishes: the publisher's rate makes
// them seconds (steady ≈ 3.5 s, after the heal ≈ 2 s).
const (
	steadyPublishes = publishRate * 7 / 2
	afterPublishes  = publishRate * 2
)

// run is one scenario in progress: the cluster under load, and when the fault
// came and went.
type run struct {
	t       testing.TB
	origin  time.Time
	nodes   []*node
	players []*player
	pub     *publisher

	faultAt, healAt time.Duration
	fault, heal     string
}

// begin connects the players, starts the publisher and runs the steady state.
func begin(t testing.TB, nodes []*node) *run {
	t.Helper()
	r := &run{t: t, origin: time.Now(), nodes: nodes}
	r.players = dialPlayers(t, nodes, r.origin)
	r.pub = startPublisher(t, nodes, r.origin)
	// Every subscription receives before anything breaks.
	if !eventually(func() bool {
		for _, s := range r.streams() {
			if s.position().Offset == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("not every subscription received a message in the steady state")
	}
	r.pub.waitAttempted(t, steadyPublishes)
	return r
}

func (r *run) streams() []*stream {
	var ss []*stream
	for _, p := range r.players {
		ss = append(ss, p.streams...)
	}
	return ss
}

func (r *run) since() time.Duration { return time.Since(r.origin) }

// inject runs the fault.
func (r *run) inject(what string, fault func()) {
	r.t.Helper()
	r.fault, r.faultAt = what, r.since()
	fault()
	r.t.Logf("+%.2fs %s", r.faultAt.Seconds(), what)
}

// recover runs the cure (nil when the cluster heals itself) and lets the load
// run on after it.
func (r *run) recover(what string, heal func()) {
	r.t.Helper()
	if heal != nil {
		heal()
	}
	r.heal, r.healAt = what, r.since()
	r.t.Logf("+%.2fs %s", r.healAt.Seconds(), what)
	r.pub.waitAttempted(r.t, afterPublishes)
}

// finish stops the publisher, waits for the subscribers to drain, checks the
// run and logs its figures. It returns the verdict for the scenario's own
// expectations.
func (r *run) finish() verdict {
	t := r.t
	t.Helper()
	r.pub.finish()
	recs := r.pub.records()
	caughtUp := eventually(func() bool { return len(r.behind(recs)) == 0 })
	records := make([]record, 0, players*topicsEach)
	for _, s := range r.streams() {
		records = append(records, s.record())
	}
	v := check(recs, records)
	r.log(v, recs, records)
	if !caughtUp {
		behind := r.behind(recs)
		t.Errorf("%d subscriptions still behind the last publish after %v, e.g. %s", len(behind), waitFor, behind[0])
		for _, b := range behind {
			t.Log(b)
		}

	}
	for _, p := range v.problems {
		t.Error(p)
	}
	for _, p := range r.players {
		for _, f := range p.failures {
			t.Errorf("player %d: %s", p.id, f)
		}
	}
	return v
}

// behind lists the subscriptions that have not reached their topic's last
// successful publish, which is last in its topic's latest epoch.
func (r *run) behind(recs []pubRecord) []string {
	type last struct {
		end time.Duration
		pos client.Position
	}
	tops := make([]last, topics)
	for _, rec := range recs {
		top := &tops[rec.topic]
		switch {
		case !rec.ok:
		case rec.pos.Epoch != top.pos.Epoch && rec.end > top.end:
			*top = last{rec.end, rec.pos}
		case rec.pos.Epoch == top.pos.Epoch && rec.pos.Offset > top.pos.Offset:
			top.pos.Offset = rec.pos.Offset
			top.end = max(top.end, rec.end)
		}
	}
	var behind []string
	for _, s := range r.streams() {
		want, got := tops[s.topic].pos, s.position()
		if got.Epoch != want.Epoch || got.Offset < want.Offset {
			behind = append(behind, fmt.Sprintf("player %d (on %s) %s at %+v, last published %+v", s.player, r.players[s.player].c.Node(), topicName(s.topic), got, want))
		}
	}
	return behind
}

// log reports the run's figures.
func (r *run) log(v verdict, recs []pubRecord, records []record) {
	t := r.t
	t.Helper()
	var reconnects int64
	drops := make(map[string]int)
	var examples []string
	for _, p := range r.players {
		reconnects += p.reconnects.Load()
		p.mu.Lock()
		for _, d := range p.drops {
			drops[errorKind(d)]++
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("player %d (now on %s) at %s", p.id, p.c.Node(), d))
			}
		}
		p.mu.Unlock()
	}
	t.Logf("publishes: %d attempted, %d succeeded, %d failed, %d skipped; %d of the failed were delivered anyway",
		v.attempted, v.succeeded, v.failed, v.skipped, v.failedDelivered)
	if v.failed > 0 {
		kinds := slices.Sorted(maps.Keys(v.errorKinds))
		causes := make([]string, len(kinds))
		for i, k := range kinds {
			causes[i] = fmt.Sprintf("%q ×%d", k, v.errorKinds[k])
		}
		t.Logf("failed publishes: the first began %+.2fs and the last was answered %+.2fs after the fault (%s); causes: %s",
			(v.firstFail - r.faultAt).Seconds(), (v.lastFail - r.faultAt).Seconds(), r.fault, strings.Join(causes, ", "))
	}
	t.Logf("deliveries: %d of %d expected arrived, %d missing but covered by a notice (%d in all, counting failed publishes delivered); %d OnUnrecovered, %d subscriptions saw a new epoch; %d client reconnects",
		v.arrived, v.expected, v.excused, v.deliveries, v.notices, v.epochSwitches, reconnects)
	if len(drops) > 0 {
		t.Logf("client connections dropped: %v, e.g. %s", drops, strings.Join(examples, "; "))
	}
	if d, ok := r.recovery(recs, records); ok {
		t.Logf("recovery: every subscription received a message published after %q %.2fs after it (%.2fs after %q)",
			r.heal, (d - r.healAt).Seconds(), (d - r.faultAt).Seconds(), r.fault)
	} else {
		t.Logf("recovery: some subscription received nothing published after %q", r.heal)
	}
}

// recovery returns when the last subscription received its first message
// published after the heal: from then on the whole cluster delivers again.
func (r *run) recovery(recs []pubRecord, records []record) (time.Duration, bool) {
	var latest time.Duration
	for _, s := range records {
		i := slices.IndexFunc(s.events, func(e event) bool {
			return !e.notice && e.seq >= 0 && e.seq < len(recs) && recs[e.seq].start >= r.healAt
		})
		if i < 0 {
			return 0, false
		}
		latest = max(latest, s.events[i].at)
	}
	return latest, true
}
