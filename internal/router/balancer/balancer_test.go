package balancer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// endpoint is a controllable Endpoint.
type endpoint struct {
	down     atomic.Bool
	inFlight atomic.Int64
}

func (e *endpoint) Ready() bool     { return !e.down.Load() }
func (e *endpoint) InFlight() int64 { return e.inFlight.Load() }

// instances returns n instances with IDs "i0".."i<n-1>", weight 1 and their
// endpoints.
func instances(n int) ([]Instance, []*endpoint) {
	ins := make([]Instance, n)
	eps := make([]*endpoint, n)
	for i := range ins {
		eps[i] = &endpoint{}
		ins[i] = Instance{ID: "i" + strconv.Itoa(i), Endpoint: eps[i]}
	}
	return ins, eps
}

func newBalancer(t testing.TB, cfg Config, ins []Instance) *Balancer {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	b.Update(ins)
	return b
}

// owners maps each of users to the ID of the instance s picks for it.
func owners(t *testing.T, s *Snapshot, users []string) map[string]string {
	t.Helper()
	m := make(map[string]string, len(users))
	for _, u := range users {
		i := s.Pick(u, nil)
		if i < 0 {
			t.Fatalf("no instance for %q", u)
		}
		m[u] = s.Instance(i).ID
	}
	return m
}

func users(n int) []string {
	u := make([]string, n)
	for i := range u {
		u[i] = "user-" + strconv.Itoa(i)
	}
	return u
}

// checkOnlyLeaversMove checks the consistent hashing property between two
// assignments: a user moves only if its instance left, and never to an
// instance that left.
func checkOnlyLeaversMove(t *testing.T, before, after map[string]string, gone map[string]bool) {
	t.Helper()
	moved, stayed := 0, 0
	for u, was := range before {
		now := after[u]
		switch {
		case gone[now]:
			t.Fatalf("user %s sent to %s, which is gone", u, now)
		case gone[was]:
			moved++
		case now != was:
			t.Fatalf("user %s moved from %s to %s although %s is still there", u, was, now, was)
		default:
			stayed++
		}
	}
	if len(gone) > 0 && moved == 0 {
		t.Fatalf("no user moved although %d instances left", len(gone))
	}
}

func TestHashOnlyLeaversMove(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		leave   []int
	}{
		{"three, first leaves", []int{1, 1, 1}, []int{0}},
		{"three, middle leaves", []int{1, 1, 1}, []int{1}},
		{"three, last leaves", []int{1, 1, 1}, []int{2}},
		{"ten, two leave", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, []int{3, 7}},
		{"weighted, heavy leaves", []int{1, 5, 2}, []int{1}},
		{"weighted, light leaves", []int{1, 5, 2}, []int{0}},
		{"two, one leaves", []int{1, 1}, []int{0}},
	}
	us := users(10_000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins, _ := instances(len(tt.weights))
			for i, w := range tt.weights {
				ins[i].Weight = w
			}
			b := newBalancer(t, Config{Policy: Hash}, ins)
			before := owners(t, b.Snapshot(), us)

			gone := map[string]bool{}
			var rest []Instance
			for i, in := range ins {
				if slices.Contains(tt.leave, i) {
					gone[in.ID] = true
				} else {
					rest = append(rest, in)
				}
			}
			b.Update(rest)
			after := owners(t, b.Snapshot(), us)
			checkOnlyLeaversMove(t, before, after, gone)

			// Coming back, each returning instance takes back exactly its users.
			b.Update(ins)
			if again := owners(t, b.Snapshot(), us); !mapsEqual(again, before) {
				t.Fatal("users did not return to their instances when the instance came back")
			}
		})
	}
}

// TestHashPropertyRandom checks the same property over random sets: random
// IDs, weights and order, one random instance leaving and one joining.
func TestHashPropertyRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	us := users(2_000)
	for iter := range 50 {
		n := 2 + rng.IntN(12)
		ins := make([]Instance, n)
		for i := range ins {
			ins[i] = Instance{ID: fmt.Sprintf("svc-%x", rng.Uint32()), Weight: 1 + rng.IntN(4)}
		}
		b := newBalancer(t, Config{Policy: Hash, VirtualNodes: 20 + rng.IntN(200)}, ins)
		before := owners(t, b.Snapshot(), us)

		leave := rng.IntN(n)
		rest := slices.Delete(slices.Clone(ins), leave, leave+1)
		rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		b.Update(rest)
		after := owners(t, b.Snapshot(), us)
		checkOnlyLeaversMove(t, before, after, map[string]bool{ins[leave].ID: true})

		// A joining instance takes users only for itself.
		joined := append(slices.Clone(rest), Instance{ID: fmt.Sprintf("new-%d", iter), Weight: 1})
		b.Update(joined)
		for u, now := range owners(t, b.Snapshot(), us) {
			if was := after[u]; now != was && now != joined[len(joined)-1].ID {
				t.Fatalf("iteration %d: user %s moved from %s to %s when only %s joined", iter, u, was, now, joined[len(joined)-1].ID)
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestHashSkipsUnready: an instance that is registered but not ready (breaker
// open) hands its users to its ring neighbours while everyone else stays.
func TestHashSkipsUnready(t *testing.T) {
	ins, eps := instances(5)
	b := newBalancer(t, Config{Policy: Hash}, ins)
	us := users(10_000)
	before := owners(t, b.Snapshot(), us)

	eps[2].down.Store(true)
	after := owners(t, b.Snapshot(), us)
	checkOnlyLeaversMove(t, before, after, map[string]bool{"i2": true})

	// The down instance's users spread over several instances, not just one.
	targets := map[string]bool{}
	for u, was := range before {
		if was == "i2" {
			targets[after[u]] = true
		}
	}
	if len(targets) < 2 {
		t.Errorf("users of the down instance all went to %v", targets)
	}

	eps[2].down.Store(false)
	if again := owners(t, b.Snapshot(), us); !mapsEqual(again, before) {
		t.Error("users did not return when the instance became ready again")
	}
}

func TestHashIgnoresOrder(t *testing.T) {
	ins, _ := instances(6)
	us := users(3_000)
	a := owners(t, newBalancer(t, Config{Policy: Hash}, ins).Snapshot(), us)
	rev := slices.Clone(ins)
	slices.Reverse(rev)
	if b := owners(t, newBalancer(t, Config{Policy: Hash}, rev).Snapshot(), us); !mapsEqual(a, b) {
		t.Error("the same instances listed in another order map users differently")
	}
}

func TestHashSpread(t *testing.T) {
	ins, _ := instances(3)
	us := users(30_000)
	counts := map[string]int{}
	for _, id := range owners(t, newBalancer(t, Config{Policy: Hash}, ins).Snapshot(), us) {
		counts[id]++
	}
	for id, c := range counts {
		// 160 points per instance keep each share within about ±25% of even.
		if share := float64(c) / float64(len(us)); share < 0.25 || share > 0.42 {
			t.Errorf("%s has %.1f%% of users, want about 33%%", id, share*100)
		}
	}
}

// count picks n times and returns how many picks each instance ID got.
func count(s *Snapshot, n int) map[string]int {
	c := map[string]int{}
	for i := range n {
		if k := s.Pick("user-"+strconv.Itoa(i), nil); k >= 0 {
			c[s.Instance(k).ID]++
		} else {
			c[""]++
		}
	}
	return c
}

func TestWeightedCanary(t *testing.T) {
	type inst struct {
		track  string
		weight int
		down   bool
	}
	tests := []struct {
		name    string
		weights map[string]int
		set     []inst
		// want is the expected percentage per track ("" for untagged).
		want map[string]float64
	}{
		{"one canary among three", map[string]int{"canary": 5},
			[]inst{{"stable", 1, false}, {"stable", 1, false}, {"stable", 1, false}, {"canary", 1, false}},
			map[string]float64{"stable": 95, "canary": 5}},
		{"two canaries, one stable", map[string]int{"canary": 5},
			[]inst{{"stable", 1, false}, {"canary", 1, false}, {"canary", 1, false}},
			map[string]float64{"stable": 95, "canary": 5}},
		{"heavy canary among many", map[string]int{"canary": 5},
			[]inst{{"", 1, false}, {"", 1, false}, {"", 2, false}, {"", 1, false}, {"", 1, false}, {"", 3, false}, {"canary", 7, false}},
			map[string]float64{"": 95, "canary": 5}},
		{"canary and beta", map[string]int{"canary": 5, "beta": 20},
			[]inst{{"stable", 1, false}, {"stable", 1, false}, {"beta", 1, false}, {"canary", 1, false}},
			map[string]float64{"stable": 75, "beta": 20, "canary": 5}},
		{"listed value absent", map[string]int{"canary": 5},
			[]inst{{"stable", 1, false}, {"stable", 1, false}},
			map[string]float64{"stable": 100}},
		{"canary down", map[string]int{"canary": 5},
			[]inst{{"stable", 1, false}, {"stable", 1, false}, {"canary", 1, true}},
			map[string]float64{"stable": 100}},
		{"one stable down", map[string]int{"canary": 5},
			[]inst{{"stable", 1, false}, {"stable", 1, true}, {"canary", 1, false}},
			map[string]float64{"stable": 95, "canary": 5}},
		{"canary drained to zero", map[string]int{"canary": 0},
			[]inst{{"stable", 1, false}, {"canary", 1, false}},
			map[string]float64{"stable": 100}},
		{"only a zero-share group left", map[string]int{"canary": 0},
			[]inst{{"stable", 1, true}, {"canary", 1, false}},
			map[string]float64{"canary": 100}},
		{"every listed share, none left over", map[string]int{"a": 30, "b": 70},
			[]inst{{"a", 1, false}, {"b", 1, false}, {"other", 1, false}},
			map[string]float64{"a": 30, "b": 70}},
	}
	const picks = 10_000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins, eps := instances(len(tt.set))
			track := map[string]string{}
			for i, in := range tt.set {
				ins[i].Weight = in.weight
				if in.track != "" {
					ins[i].Tags = map[string]string{"track": in.track}
				}
				eps[i].down.Store(in.down)
				track[ins[i].ID] = in.track
			}
			b := newBalancer(t, Config{Policy: Weighted, Weights: tt.weights}, ins)
			got := map[string]float64{}
			for id, c := range count(b.Snapshot(), picks) {
				got[track[id]] += float64(c) * 100 / picks
			}
			for tr, want := range tt.want {
				if d := got[tr] - want; d < -1 || d > 1 {
					t.Errorf("track %q got %.2f%% of picks, want %.0f%% ± 1 (all: %v)", tr, got[tr], want, got)
				}
			}
			for tr, g := range got {
				if _, ok := tt.want[tr]; !ok && g > 0 {
					t.Errorf("track %q got %.2f%% of picks, want none", tr, g)
				}
			}
		})
	}
}

// TestWeightedWithinGroup: inside a group, instance weights set the split.
func TestWeightedWithinGroup(t *testing.T) {
	ins, _ := instances(3)
	ins[0].Weight, ins[1].Weight, ins[2].Weight = 1, 3, 1
	ins[2].Tags = map[string]string{"track": "canary"}
	b := newBalancer(t, Config{Policy: Weighted, Weights: map[string]int{"canary": 20}}, ins)
	c := count(b.Snapshot(), 10_000)
	for id, want := range map[string]int{"i0": 2000, "i1": 6000, "i2": 2000} {
		if d := c[id] - want; d < -100 || d > 100 {
			t.Errorf("%s: %d picks, want %d ± 100", id, c[id], want)
		}
	}
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		down    []int
		want    []int // picks per instance over 600 picks
	}{
		{"even", []int{1, 1, 1}, nil, []int{200, 200, 200}},
		{"weighted", []int{1, 2, 3}, nil, []int{100, 200, 300}},
		{"one down: survivors stay even", []int{1, 1, 1}, []int{2}, []int{300, 300, 0}},
		{"first down", []int{1, 1, 1, 1}, []int{0}, []int{0, 200, 200, 200}},
		{"weighted, heavy down", []int{1, 1, 4}, []int{2}, []int{300, 300, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins, eps := instances(len(tt.weights))
			for i, w := range tt.weights {
				ins[i].Weight = w
			}
			for _, d := range tt.down {
				eps[d].down.Store(true)
			}
			c := count(newBalancer(t, Config{}, ins).Snapshot(), 600)
			for i, want := range tt.want {
				// Skips use up turns, so survivors may differ by a turn or two.
				if d := c[ins[i].ID] - want; d < -3 || d > 3 {
					t.Errorf("%s: %d picks, want %d (all: %v)", ins[i].ID, c[ins[i].ID], want, c)
				}
			}
		})
	}
}

func TestSmoothSequenceInterleaves(t *testing.T) {
	ins, _ := instances(3)
	ins[0].Weight, ins[1].Weight, ins[2].Weight = 5, 1, 1
	got := smoothSequence(ins)
	want := []int32{0, 0, 1, 0, 2, 0, 0}
	if !slices.Equal(got, want) {
		t.Errorf("sequence %v, want %v", got, want)
	}
}

func TestLeastInFlight(t *testing.T) {
	tests := []struct {
		name     string
		inFlight []int64
		weights  []int
		down     []int
		want     int
	}{
		{"fewest wins", []int64{5, 2, 7}, nil, nil, 1},
		{"weight counts", []int64{4, 3}, []int{2, 1}, nil, 0},
		{"down skipped", []int64{5, 2, 7}, nil, []int{1}, 0},
		{"all down", []int64{1, 1}, nil, []int{0, 1}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins, eps := instances(len(tt.inFlight))
			for i, n := range tt.inFlight {
				eps[i].inFlight.Store(n)
			}
			for i, w := range tt.weights {
				ins[i].Weight = w
			}
			for _, d := range tt.down {
				eps[d].down.Store(true)
			}
			s := newBalancer(t, Config{Policy: LeastInFlight}, ins).Snapshot()
			for range 10 {
				if got := s.Pick("", nil); got != tt.want {
					t.Fatalf("Pick() = %d, want %d", got, tt.want)
				}
			}
		})
	}

	// Ties rotate rather than piling onto the first instance.
	ins, _ := instances(4)
	c := count(newBalancer(t, Config{Policy: LeastInFlight}, ins).Snapshot(), 400)
	for _, in := range ins {
		if c[in.ID] != 100 {
			t.Errorf("idle instances should share ties evenly: %v", c)
			break
		}
	}
}

var policies = []Policy{RoundRobin, LeastInFlight, Hash, Weighted}

func TestPickSkipsTriedAndDown(t *testing.T) {
	for _, p := range policies {
		t.Run(string(p), func(t *testing.T) {
			cfg := Config{Policy: p, Weights: map[string]int{"canary": 5}}
			if s := newBalancer(t, cfg, nil).Snapshot(); s.Pick("u", nil) != -1 {
				t.Error("empty snapshot picked an instance")
			}
			ins, eps := instances(4)
			ins[3].Tags = map[string]string{"track": "canary"}
			s := newBalancer(t, cfg, ins).Snapshot()
			for key := range 200 {
				var tried Tried
				for range 4 {
					i := s.Pick(strconv.Itoa(key), &tried)
					if i < 0 || tried.Has(i) {
						t.Fatalf("Pick = %d with tried %v", i, tried.idx[:tried.n])
					}
					tried.Add(i)
				}
				if i := s.Pick(strconv.Itoa(key), &tried); i != -1 {
					t.Fatalf("every instance tried, Pick = %d", i)
				}
			}
			for _, e := range eps[:3] {
				e.down.Store(true)
			}
			for key := range 50 {
				if i := s.Pick(strconv.Itoa(key), nil); i != 3 {
					t.Fatalf("only i3 ready, Pick = %d", i)
				}
			}
			eps[3].down.Store(true)
			if i := s.Pick("u", nil); i != -1 {
				t.Fatalf("nothing ready, Pick = %d", i)
			}
		})
	}
}

func TestTriedBound(t *testing.T) {
	var tr Tried
	for i := range MaxTried {
		if !tr.Add(i) {
			t.Fatalf("Add(%d) refused below MaxTried", i)
		}
	}
	if tr.Add(99) || tr.Has(99) || tr.Len() != MaxTried {
		t.Error("Tried grew past MaxTried")
	}
	var nilTried *Tried
	if nilTried.Has(0) {
		t.Error("nil Tried is not empty")
	}
}

func TestPickAllocs(t *testing.T) {
	for _, p := range policies {
		ins, _ := instances(8)
		ins[7].Tags = map[string]string{"track": "canary"}
		s := newBalancer(t, Config{Policy: p, Weights: map[string]int{"canary": 5}}, ins).Snapshot()
		if n := testing.AllocsPerRun(1000, func() {
			var tried Tried
			tried.Add(s.Pick("user-42", &tried))
			s.Pick("user-42", &tried)
		}); n != 0 {
			t.Errorf("%s: Pick allocates %v times, want 0", p, n)
		}
	}
}

// TestConcurrentUpdate picks on many goroutines while the set keeps changing;
// run under -race it checks that snapshots are never written after publishing.
func TestConcurrentUpdate(t *testing.T) {
	for _, p := range policies {
		t.Run(string(p), func(t *testing.T) {
			ins, _ := instances(6)
			b := newBalancer(t, Config{Policy: p}, ins)
			var stop atomic.Bool
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for k := 0; !stop.Load(); k++ {
						s := b.Snapshot()
						if i := s.Pick(strconv.Itoa(g*1_000_000+k), nil); i >= s.Len() || (i < 0 && s.Len() > 0) {
							t.Errorf("Pick = %d of %d", i, s.Len())
							return
						}
					}
				})
			}
			for n := range 200 {
				b.Update(slices.Clone(ins[:1+n%len(ins)]))
			}
			stop.Store(true)
			wg.Wait()
		})
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero", Config{}, false},
		{"hash", Config{Policy: Hash, VirtualNodes: 10}, false},
		{"unknown policy", Config{Policy: "random"}, true},
		{"weights", Config{Policy: Weighted, Weights: map[string]int{"canary": 5, "beta": 95}}, false},
		{"weights over 100", Config{Policy: Weighted, Weights: map[string]int{"canary": 50, "beta": 51}}, true},
		{"negative weight", Config{Policy: Weighted, Weights: map[string]int{"canary": -1}}, true},
		{"negative virtual nodes", Config{VirtualNodes: -1}, true},
		{"huge ring", Config{VirtualNodes: 100_000}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); (err != nil) != tt.wantErr {
				t.Errorf("New() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
