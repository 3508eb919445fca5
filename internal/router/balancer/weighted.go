package balancer

import (
	"slices"
	"sync/atomic"
)

// weighted splits traffic between groups of instances by tag value, then within
// a group by instance weight. share[i] is instance i's percentage; cum[i] is
// the sum of the shares of instances 0..i, so cum[len-1] is the total (100
// unless some share went unclaimed). group[i] numbers i's group: one per listed
// tag value present, and one for everybody else.
type weighted struct {
	share []float64
	cum   []float64
	group []int32
	next  *atomic.Uint64
}

func newWeighted(instances []Instance, tag string, weights map[string]int, next *atomic.Uint64) *weighted {
	// Each listed tag value present gets its share; everyone else splits the
	// remainder. Values listed but absent from the set give theirs away, which
	// scaling picks by cum's total does.
	groupWeight := map[string]int{} // sum of instance weights per listed value present
	groupID := map[string]int32{}
	restWeight, listed := 0, 0
	for i := range instances {
		if v, ok := listedValue(&instances[i], tag, weights); ok {
			if _, seen := groupID[v]; !seen {
				groupID[v] = int32(len(groupID)) + 1 // 0 is the rest
				listed += weights[v]
			}
			groupWeight[v] += instances[i].weight()
		} else {
			restWeight += instances[i].weight()
		}
	}
	rest := float64(max(100-listed, 0))
	n := len(instances)
	w := &weighted{share: make([]float64, n), cum: make([]float64, n), group: make([]int32, n), next: next}
	total := 0.0
	for i := range instances {
		iw := float64(instances[i].weight())
		if v, ok := listedValue(&instances[i], tag, weights); ok {
			w.share[i] = float64(weights[v]) * iw / float64(groupWeight[v])
			w.group[i] = groupID[v]
		} else {
			w.share[i] = rest * iw / float64(restWeight)
		}
		total += w.share[i]
		w.cum[i] = total
	}
	return w
}

// listedValue returns in's value of tag if Weights lists it.
func listedValue(in *Instance, tag string, weights map[string]int) (string, bool) {
	v, ok := in.Tags[tag]
	if !ok {
		return "", false
	}
	_, listed := weights[v]
	return v, listed
}

// golden is 2^64 / φ: n × golden modulo 2^64 is the golden-ratio (Weyl)
// sequence, whose first n values split any interval into shares within
// O(log n / n) of their lengths.
const golden = 0x9E3779B97F4A7C15

// fraction returns the next point of the golden-ratio sequence in [0, 1).
func (w *weighted) fraction() float64 {
	return float64((w.next.Add(1)*golden)>>11) / (1 << 53)
}

func (w *weighted) pick(s *Snapshot, tried *Tried) int {
	n := len(w.cum)
	total := w.cum[n-1]
	if total == 0 {
		return w.pickAmong(s, -1, 0, tried)
	}
	target := w.fraction() * total
	i, _ := slices.BinarySearch(w.cum, target)
	// BinarySearch finds the first cum >= target; instance i owns
	// [cum[i-1], cum[i]), so a target on a boundary, or an instance with a zero
	// share, means the next one.
	for i < n && (w.cum[i] <= target || w.share[i] == 0) {
		i++
	}
	if i < n && s.usable(i, tried) {
		return i
	}
	// An instance that cannot be used hands its traffic to its own group first,
	// so a stable instance going down does not raise the canary's share.
	// The new draw is where the target fell within the skipped instance's
	// share, rather than the next point of the sequence: successive points are
	// correlated (each is 0.618 on from the last), so taking the next one
	// would pile the skipped share onto whichever instance sits 0.618 further.
	group, u := int32(0), 0.0
	if i < n {
		group = w.group[i]
		u = min(max((target-(w.cum[i]-w.share[i]))/w.share[i], 0), 1)
	}
	if k := w.pickAmong(s, group, u, tried); k >= 0 {
		return k
	}
	return w.pickAmong(s, -1, u, tried)
}

// pickAmong picks the instance at fraction u of the summed shares of the
// usable instances of group (every group when group < 0). When all of those
// have a zero share (a group set to 0% is all that is left), any usable one
// beats failing.
func (w *weighted) pickAmong(s *Snapshot, group int32, u float64, tried *Tried) int {
	total, first := 0.0, -1
	for i := range w.share {
		if (group < 0 || w.group[i] == group) && s.usable(i, tried) {
			total += w.share[i]
			if first < 0 {
				first = i
			}
		}
	}
	if total == 0 {
		return first
	}
	target, acc, last := u*total, 0.0, -1
	for i := range w.share {
		if w.share[i] == 0 || (group >= 0 && w.group[i] != group) || !s.usable(i, tried) {
			continue
		}
		acc += w.share[i]
		last = i
		if target < acc {
			return i
		}
	}
	// Rounding left the target just past the last share, or an instance
	// stopped being ready between the two passes.
	return last
}
