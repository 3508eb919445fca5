package hub

import "github.com/heraldgg/herald/internal/session"

// subscribers is one topic's subscribers on a shard, in a dense list: fan-out
// walks it in order, reading each recipient's session and subscription state
// side by side, where walking a map cost a hash-table probe and a scattered
// read per recipient. Each Sub knows its slot, so leaving is a swap with the
// last entry. Owned by the shard worker.
type subscribers struct {
	list []member
}

type member struct {
	s   *session.Session
	sub *session.Sub
}

func (set *subscribers) add(s *session.Session, sub *session.Sub) {
	sub.Slot = len(set.list)
	set.list = append(set.list, member{s, sub})
}

func (set *subscribers) remove(sub *session.Sub) {
	i := sub.Slot
	if i < 0 || i >= len(set.list) || set.list[i].sub != sub {
		return
	}
	last := len(set.list) - 1
	if i != last {
		set.list[i] = set.list[last]
		set.list[i].sub.Slot = i
	}
	set.list[last] = member{}
	set.list = set.list[:last]
	sub.Slot = -1
	// A topic that lost most of its subscribers gives the memory back.
	if cap(set.list) > 64 && len(set.list) < cap(set.list)/4 {
		set.list = append([]member(nil), set.list...)
	}
}
