package hub

import (
	"math/rand/v2"
	"testing"

	"github.com/heraldgg/herald/internal/session"
)

// TestSubscribers checks the dense list against a set over random joins and
// leaves: every member once, every slot right.
func TestSubscribers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var set subscribers
	want := map[*session.Sub]*session.Session{}
	var all []*session.Sub
	for step := range 20000 {
		if len(all) == 0 || rng.IntN(3) > 0 {
			s, sub := &session.Session{}, &session.Sub{}
			set.add(s, sub)
			want[sub] = s
			all = append(all, sub)
		} else {
			k := rng.IntN(len(all))
			sub := all[k]
			all[k] = all[len(all)-1]
			all = all[:len(all)-1]
			set.remove(sub)
			set.remove(sub) // twice is harmless
			delete(want, sub)
			if sub.Slot != -1 {
				t.Fatalf("step %d: removed sub keeps slot %d", step, sub.Slot)
			}
		}
		if step%97 != 0 {
			continue
		}
		if len(set.list) != len(want) {
			t.Fatalf("step %d: %d members, want %d", step, len(set.list), len(want))
		}
		for i, m := range set.list {
			if m.sub.Slot != i || want[m.sub] != m.s {
				t.Fatalf("step %d: member %d has slot %d", step, i, m.sub.Slot)
			}
		}
	}
}
