package track

import "github.com/heraldgg/herald/internal/broker"

// Set is a broker's delivery state for every topic it delivers: a Track per
// topic, the topics waiting for a history read, and the hand-off of what
// becomes deliverable to the broker's handler. The broker guards it with its
// own lock, held for every method: that keeps one topic's deliveries in order
// and never concurrent, whichever goroutine has them. Kick is the exception.
type Set struct {
	// Handler receives the deliveries; set it before the first publication.
	Handler broker.Handler
	// Tracks holds the subscribed topics.
	Tracks map[string]*Track
	// Kick (capacity 1) wakes the broker's history reader when a topic needs
	// a read.
	Kick chan struct{}

	maxPending int
	dirty      map[string]struct{}
	out        []broker.Publication // scratch for deliveries
}

// NewSet returns an empty set that holds at most maxPending live publications
// per topic behind a gap.
func NewSet(maxPending int) *Set {
	return &Set{Tracks: make(map[string]*Track), Kick: make(chan struct{}, 1),
		maxPending: maxPending, dirty: make(map[string]struct{})}
}

// Live takes a publication of topic that arrived live, delivers what it makes
// deliverable, and queues a history read when it shows a gap. A topic not in
// the set (unsubscribed since) is ignored.
func (s *Set) Live(topic string, p broker.Publication) {
	tr := s.Tracks[topic]
	if tr == nil {
		return
	}
	out, read := tr.Live(p, s.out[:0], s.maxPending)
	if read {
		s.MarkDirty(topic)
	}
	s.deliver(out)
}

// Fill is the outcome of a history read.
type Fill struct {
	// Filled counts the publications delivered from the read, after the first
	// read of the topic (which only sets its baseline).
	Filled int
	// Jumped reports delivered offsets that skip what history no longer held.
	Jumped bool
}

// Filled applies a history read of topic (see Track.Filled) and delivers what
// it makes deliverable. more says the read stopped short of pos: the rest is
// queued for another read. A topic not in the set gives the zero Fill.
func (s *Set) Filled(topic string, pos broker.Position, pubs []broker.Publication, more bool) Fill {
	tr := s.Tracks[topic]
	if tr == nil {
		return Fill{}
	}
	wasKnown := tr.Known()
	out, jumped, again := tr.Filled(pos, pubs, s.out[:0], s.maxPending)
	if more {
		tr.Syncing()
	}
	if again || more {
		s.MarkDirty(topic)
	}
	f := Fill{Jumped: jumped}
	if wasKnown {
		f.Filled = countFrom(out, pubs)
	}
	s.deliver(out)
	return f
}

// countFrom counts the publications of out that came from the history read.
func countFrom(out, read []broker.Publication) int {
	if len(read) == 0 {
		return 0
	}
	first := read[0]
	n := 0
	for _, p := range out {
		if p.Epoch == first.Epoch && p.Offset >= first.Offset && p.Offset <= read[len(read)-1].Offset {
			n++
		}
	}
	return n
}

// MarkDirty queues a history read of topic and wakes the reader.
func (s *Set) MarkDirty(topic string) {
	s.dirty[topic] = struct{}{}
	select {
	case s.Kick <- struct{}{}:
	default:
	}
}

// Resync queues a history read of topic, which may have missed publications
// (a reconnect, live messages dropped), holding its live ones back meanwhile.
func (s *Set) Resync(topic string) {
	if tr := s.Tracks[topic]; tr != nil && tr.Known() {
		tr.Syncing()
	}
	s.MarkDirty(topic)
}

// ResyncAll is Resync for every topic.
func (s *Set) ResyncAll() {
	for t := range s.Tracks {
		s.Resync(t)
	}
}

// TakeDirty returns the topics waiting for a read and forgets them.
func (s *Set) TakeDirty() []string {
	topics := make([]string, 0, len(s.dirty))
	for t := range s.dirty {
		topics = append(topics, t)
	}
	clear(s.dirty)
	return topics
}

// Retry queues topic's read again after it failed, if the topic is still
// subscribed; the caller kicks the reader once it has waited.
func (s *Set) Retry(topic string) {
	if s.Tracks[topic] != nil {
		s.dirty[topic] = struct{}{}
	}
}

// Forget drops topic's track, if it is still tr.
func (s *Set) Forget(topic string, tr *Track) {
	if s.Tracks[topic] == tr {
		delete(s.Tracks, topic)
		delete(s.dirty, topic)
	}
}

func (s *Set) deliver(out []broker.Publication) {
	for _, p := range out {
		s.Handler.HandlePublication(p)
	}
	clear(out)
	s.out = out[:0]
}
