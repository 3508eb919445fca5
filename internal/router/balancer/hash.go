package balancer

import (
	"math/bits"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// ring is a consistent-hash ring. points is sorted; owners[k] is the index of
// the instance that owns points[k].
//
// The hash is xxhash rather than a per-process seeded one (hash/maphash)
// because every Herald node must send a player to the same instance.
type ring struct {
	points []uint64
	owners []int32
}

func newRing(instances []Instance, vnodes int) *ring {
	total := 0
	for i := range instances {
		total += vnodes * instances[i].weight()
	}
	type point struct {
		h     uint64
		owner int32
	}
	pts := make([]point, 0, total)
	var buf []byte
	for i := range instances {
		id := instances[i].ID
		for v := range vnodes * instances[i].weight() {
			buf = append(buf[:0], id...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(v), 10)
			pts = append(pts, point{xxhash.Sum64(buf), int32(i)})
		}
	}
	// Ties (two instances hashing a point to the same value) are broken by ID
	// so that the ring, and so every player's instance, does not depend on the
	// order instances were listed in.
	slices.SortFunc(pts, func(a, b point) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		switch ia, ib := instances[a.owner].ID, instances[b.owner].ID; {
		case ia < ib:
			return -1
		case ia > ib:
			return 1
		}
		return 0
	})
	r := &ring{points: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for k, p := range pts {
		r.points[k], r.owners[k] = p.h, p.owner
	}
	return r
}

// pick returns the owner of the first point at or after the key's hash, or,
// when that instance cannot be used, of the next point along the ring whose
// instance can.
func (r *ring) pick(s *Snapshot, key string, tried *Tried) int {
	k, _ := slices.BinarySearch(r.points, xxhash.Sum64String(key))
	// rejected remembers instances already found unusable (the first 64), so a
	// walk past many points of one down instance checks it once.
	var rejected uint64
	for range len(r.points) {
		if k == len(r.points) {
			k = 0
		}
		i := int(r.owners[k])
		k++
		if i < 64 && rejected&(1<<i) != 0 {
			continue
		}
		if s.usable(i, tried) {
			return i
		}
		if i < 64 {
			rejected |= 1 << i
			if bits.OnesCount64(rejected) == len(s.instances) {
				return -1
			}
		}
	}
	return -1
}
