package nats

import (
	"slices"

	"github.com/heraldgg/herald/internal/broker"
)

// track is this node's delivery state for one subscribed topic: the position of
// the last publication handed to the handler, and what waits behind a gap.
// (The redis broker keeps the same logic; each package owns its copy so
// neither imports the other.)
// Guarded by Broker.mu; the methods never block and never call the handler,
// they return what the caller must deliver, in order.
type track struct {
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

// live takes a publication that arrived on the Pub/Sub connection. It returns
// out with the publications now deliverable appended, and reports whether a
// stream read must be queued for the topic (it was not queued already).
func (tr *track) live(p broker.Publication, out []broker.Publication, maxPending int) ([]broker.Publication, bool) {
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

// baseline sets the position from which live publications count when nothing
// was delivered yet. Once anything was delivered it is ignored: that
// publication already fixed the position.
func (tr *track) baseline(pos broker.Position) {
	if !tr.known {
		tr.known, tr.epoch, tr.last = true, pos.Epoch, pos.Offset
	}
}

// filled applies a stream read made after the topic's position at the time:
// pos is the topic's latest position and pubs the retained publications of
// pos.Epoch after the track's position (all of them when the epoch changed),
// in offset order. It returns out with what to deliver appended, whether the
// delivered offsets jumped (history no longer held what was missed), and
// whether another read is needed for publications still waiting behind a gap.
func (tr *track) filled(pos broker.Position, pubs []broker.Publication, out []broker.Publication, maxPending int) (_ []broker.Publication, jumped, again bool) {
	tr.syncing = false
	if !tr.known {
		tr.baseline(pos)
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
func (tr *track) offer(p broker.Publication, out []broker.Publication, maxPending int) ([]broker.Publication, bool) {
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
func (tr *track) drain(out []broker.Publication, maxPending int) ([]broker.Publication, bool) {
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

func (tr *track) wait(p broker.Publication, maxPending int) {
	if len(tr.pending) >= maxPending {
		// The oldest is still in the stream; the read will bring it.
		tr.pending = slices.Delete(tr.pending, 0, 1)
	}
	tr.pending = append(tr.pending, p)
}

// switchEpoch starts over in a new epoch; what waits from any other epoch is
// history that no longer exists.
func (tr *track) switchEpoch(epoch string) {
	tr.epoch, tr.last = epoch, 0
	tr.pending = slices.DeleteFunc(tr.pending, func(p broker.Publication) bool { return p.Epoch != epoch })
}
