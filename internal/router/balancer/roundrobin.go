package balancer

import "sync/atomic"

// roundRobin cycles through a precomputed sequence in which each instance
// appears Weight times, interleaved.
type roundRobin struct {
	seq  []int32
	next *atomic.Uint64
}

func newRoundRobin(instances []Instance, next *atomic.Uint64) *roundRobin {
	return &roundRobin{seq: smoothSequence(instances), next: next}
}

// smoothSequence is nginx's smooth weighted round robin unrolled over one
// cycle: weights 5, 1, 1 give a a b a c a a rather than a a a a a b c, so a
// heavy instance never takes a burst. The cycle is at most MaxWeight × the
// instance count long.
func smoothSequence(instances []Instance) []int32 {
	total := 0
	uniform := true
	for i := range instances {
		w := instances[i].weight()
		total += w
		uniform = uniform && w == instances[0].weight()
	}
	if uniform {
		seq := make([]int32, len(instances))
		for i := range seq {
			seq[i] = int32(i)
		}
		return seq
	}
	seq := make([]int32, 0, total)
	current := make([]int, len(instances))
	for range total {
		best := 0
		for i := range instances {
			current[i] += instances[i].weight()
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		seq = append(seq, int32(best))
	}
	return seq
}

// pick takes the next position in the cycle. A skipped instance still uses up
// its position, which is what keeps the survivors even: with a, b, c and c
// down, picks go a b a b rather than a b a a (c's turns all falling to a).
func (r *roundRobin) pick(s *Snapshot, tried *Tried) int {
	n := uint64(len(r.seq))
	for range len(r.seq) {
		i := int(r.seq[r.next.Add(1)%n])
		if s.usable(i, tried) {
			return i
		}
	}
	return -1
}

// leastInFlight picks the instance with the fewest requests in flight per unit
// of weight, starting its scan at a rotating offset so ties spread out.
type leastInFlight struct {
	next *atomic.Uint64
}

func (l *leastInFlight) pick(s *Snapshot, tried *Tried) int {
	n := len(s.instances)
	start := int(l.next.Add(1) % uint64(n))
	best, bestLoad, bestWeight := -1, int64(0), int64(1)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if !s.usable(i, tried) {
			continue
		}
		load, w := s.inFlight(i), int64(s.instances[i].weight())
		// load/w < bestLoad/bestWeight, without dividing.
		if best < 0 || load*bestWeight < bestLoad*w {
			best, bestLoad, bestWeight = i, load, w
		}
	}
	return best
}
