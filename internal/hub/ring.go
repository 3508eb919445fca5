package hub

import (
	"sync/atomic"
)

// ring is a bounded multi-producer, single-consumer queue without locks: the
// publish path hands each message to a shard with one compare-and-swap, and the
// shard worker takes a whole batch without contending with publishers. Each slot
// carries a sequence number telling whose turn it is (producer or consumer), so a
// slot is never read before its value is written, nor overwritten before it is read.
type ring[T any] struct {
	mask  uint64
	slots []ringSlot[T]
	_     [64]byte // keep the producers' counter off the consumer's cache line
	tail  atomic.Uint64
	_     [56]byte
	head  atomic.Uint64
}

type ringSlot[T any] struct {
	seq atomic.Uint64
	val T
}

// newRing returns a ring holding at least size items (rounded up to a power of two).
func newRing[T any](size int) *ring[T] {
	n := 1
	for n < size {
		n <<= 1
	}
	r := &ring[T]{mask: uint64(n - 1), slots: make([]ringSlot[T], n)}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	return r
}

// push appends v; false when the ring is full. Safe from any goroutine.
func (r *ring[T]) push(v T) bool {
	for {
		pos := r.tail.Load()
		s := &r.slots[pos&r.mask]
		switch seq := s.seq.Load(); {
		case seq == pos:
			if r.tail.CompareAndSwap(pos, pos+1) {
				s.val = v
				s.seq.Store(pos + 1) // publishes val to the consumer
				return true
			}
		case seq < pos:
			return false // the consumer has not freed this slot yet: full
		}
		// Another producer claimed pos first; try the next one.
	}
}

// pop removes the oldest item; false when there is none ready. Consumer only.
func (r *ring[T]) pop() (T, bool) {
	var zero T
	pos := r.head.Load()
	s := &r.slots[pos&r.mask]
	if s.seq.Load() != pos+1 {
		return zero, false
	}
	v := s.val
	s.val = zero                  // drop references for the garbage collector
	s.seq.Store(pos + r.mask + 1) // hands the slot back to producers
	r.head.Store(pos + 1)
	return v, true
}

// len is approximate while producers run.
func (r *ring[T]) len() int { return int(r.tail.Load() - r.head.Load()) }
