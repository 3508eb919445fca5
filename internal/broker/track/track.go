// Package track holds a broker node's delivery state for one subscribed topic:
// which publication it handed on last, and what waits behind a gap until a
// history read fills it. The Redis and NATS brokers both deliver through it, so
// gap filling, duplicate dropping and epoch changes behave the same on both.
package track

import (
	"slices"

	"github.com/heraldgg/herald/internal/broker"
)

// Track is this node's delivery state for one subscribed topic: the position of
// the last publication handed to the handler, and what waits behind a gap.
// The caller guards it with its own lock; the methods never block and never call
// the handler, they return what the caller must deliver, in order.
type Track struct {
	epoch string
	last  uint64
	// known is false until the first publication or the baseline read set
	// epoch and last.
	known bool
	// syncing is true while a stream read for the topic is queued or in flight.
	syncing bool
	// pending holds live publications that arrived after a gap, so they need
	// not be read from the stream again once the gap is filled. Bounded by
	// maxPending; what falls off is read from the stream.
	pending []broker.Publication
}

// Live takes a publication that arrived on the Pub/Sub connection. It returns
// out with the publications now deliverable appended, and reports whether a
// stream read must be queued for the topic (it was not queued already).
func (tr *Track) Live(p broker.Publication, out []broker.Publication, maxPending int) ([]broker.Publication, bool) {
	out, waiting := tr.offer(p, out, maxPending)
	if !waiting && len(tr.pending) > 0 {
		out, waiting = tr.drain(out, maxPending)
	}
	if waiting && !tr.syncing {
		tr.syncing = true
		return out, true
	}
	return out, false
}

// Baseline sets the position from which live publications count when nothing
// was delivered yet. Once anything was delivered it is ignored: that
// publication already fixed the position.
func (tr *Track) Baseline(pos broker.Position) {
	if !tr.known {
		tr.known, tr.epoch, tr.last = true, pos.Epoch, pos.Offset
	}
}

// Filled applies a stream read made after the topic's position at the time:
// pos is the topic's latest position and pubs the retained publications of
// pos.Epoch after the track's position (all of them when the epoch changed),
// in offset order. It returns out with what to deliver appended, whether the
// delivered offsets jumped (history no longer held what was missed), and
// whether another read is needed for publications still waiting behind a gap.
func (tr *Track) Filled(pos broker.Position, pubs []broker.Publication, out []broker.Publication, maxPending int) (_ []broker.Publication, jumped, again bool) {
	tr.syncing = false
	if !tr.known {
		tr.Baseline(pos)
	} else {
		if pos.Epoch != tr.epoch {
			tr.switchEpoch(pos.Epoch)
		}
		for _, p := range pubs {
			if p.Epoch != tr.epoch || p.Offset <= tr.last {
				continue
			}
			jumped = jumped || p.Offset != tr.last+1
			tr.last = p.Offset
			out = append(out, p)
		}
		if pos.Offset > tr.last {
			// Only when history was cut between the write and the read; what
			// is gone cannot be delivered, so continue from the position.
			jumped, tr.last = true, pos.Offset
		}
	}
	var waiting bool
	if len(tr.pending) > 0 {
		out, waiting = tr.drain(out, maxPending)
	}
	if waiting {
		tr.syncing = true
	}
	return out, jumped, waiting
}

// offer delivers p if it is the next publication, drops it if it was already
// delivered, and otherwise keeps it in pending and reports that it waits.
func (tr *Track) offer(p broker.Publication, out []broker.Publication, maxPending int) ([]broker.Publication, bool) {
	if !tr.known {
		tr.known, tr.epoch, tr.last = true, p.Epoch, p.Offset
		if p.Offset == 0 {
			return out, false // an epoch marker: a position, nothing to deliver
		}
		return append(out, p), false
	}
	if p.Epoch != tr.epoch {
		if p.Offset > 1 {
			// Publications of a new epoch were missed: read them.
			tr.wait(p, maxPending)
			return out, true
		}
		tr.switchEpoch(p.Epoch)
	}
	switch {
	case p.Offset <= tr.last:
		return out, false
	case p.Offset == tr.last+1:
		tr.last = p.Offset
		return append(out, p), false
	default:
		tr.wait(p, maxPending)
		return out, true
	}
}

// drain offers every pending publication again, in offset order.
func (tr *Track) drain(out []broker.Publication, maxPending int) ([]broker.Publication, bool) {
	items := tr.pending
	tr.pending = nil
	slices.SortStableFunc(items, func(a, b broker.Publication) int {
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	var waiting bool
	for _, p := range items {
		var w bool
		out, w = tr.offer(p, out, maxPending)
		waiting = waiting || w
	}
	return out, waiting
}

func (tr *Track) wait(p broker.Publication, maxPending int) {
	if len(tr.pending) >= maxPending {
		// The oldest is still in the stream; the read will bring it.
		tr.pending = slices.Delete(tr.pending, 0, 1)
	}
	tr.pending = append(tr.pending, p)
}

// switchEpoch starts over in a new epoch; what waits from any other epoch is
// history that no longer exists.
func (tr *Track) switchEpoch(epoch string) {
	tr.epoch, tr.last = epoch, 0
	tr.pending = slices.DeleteFunc(tr.pending, func(p broker.Publication) bool { return p.Epoch != epoch })
}

// Known reports whether the track has a position yet (a publication or a
// baseline set it).
func (tr *Track) Known() bool { return tr.known }

// Syncing marks a history read for the topic as queued or in flight, so that
// Live does not ask for another.
func (tr *Track) Syncing() { tr.syncing = true }

// Position is the last publication delivered (or the baseline).
func (tr *Track) Position() broker.Position { return broker.Position{Offset: tr.last, Epoch: tr.epoch} }
