package hub

import (
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// Place puts s at (x, y) on the map named mapName, taking it off the map it was
// on, or, when mapName is "", takes it off its map. Once done, s is sent a moved
// frame answering ack (0 for a placement by the server): with the map and
// position, or without a map when it left. On a map with interest, enter and
// leave events follow it.
//
// The caller has checked that the move is allowed. Errors: ErrNoMap,
// ErrOutOfBounds (CheckPosition's), ErrSessionGone. Place may wait while the
// map's worker is behind; it never waits holding s.PlaceMu.
func (h *Hub) Place(s *session.Session, mapName string, x, y float64, ack uint64) error {
	var m *worldMap
	if mapName != "" {
		if err := h.CheckPosition(mapName, x, y); err != nil {
			return err
		}
		m = h.maps[mapName]
		m.waitRoom()
	}
	s.PlaceMu.Lock()
	if s.Gone {
		s.PlaceMu.Unlock()
		return ErrSessionGone
	}
	old := h.maps[s.Map]
	s.Map = mapName
	if old != nil && old != m {
		old.push(mapItem{op: opRemove, sess: s, ack: ack, answer: m == nil, stay: true})
	}
	if m != nil {
		m.push(mapItem{op: opPlace, sess: s, x: x, y: y, ack: ack})
	}
	s.PlaceMu.Unlock()
	if old == nil && m == nil {
		// On no map and staying so: nothing to change, but the move is answered.
		// Sent after the unlock because Send may wait for the shard.
		h.Send(s, leftFrame(s, ack))
	}
	return nil
}

// unplace takes a departing session off its map for good; a later Place fails
// with ErrSessionGone. Called by the session's shard worker when it removes
// the session, so it must not wait: push never does.
func (h *Hub) unplace(s *session.Session) {
	s.PlaceMu.Lock()
	defer s.PlaceMu.Unlock()
	s.Gone = true
	if m := h.maps[s.Map]; m != nil {
		m.push(mapItem{op: opRemove, sess: s})
	}
	s.Map = ""
}

// Region delivers f to every local session within a, except the sessions whose
// ids are in exclude. The caller has checked a with CheckArea; an area on a map
// this node lacks reaches no one. f is shared by all recipients: see RegionFrame.
// Region may wait while the map's worker is behind.
func (h *Hub) Region(a Area, exclude []string, f *session.Frame) {
	m := h.maps[a.Map]
	if m == nil {
		return
	}
	var nums []uint64
	for _, id := range exclude {
		// A session of another node cannot be in this node's grid anyway.
		if s, ok := h.Session(id); ok {
			nums = append(nums, s.Num)
		}
	}
	m.deliver(mapItem{op: opRegion, region: &regionReq{area: a, frame: f, exclude: nums}})
}

// RegionFrame is the msg a region broadcast delivers: kind region, with the
// map and origin of the area so that receivers can tell where it came from.
func RegionFrame(a Area, data []byte) *session.Frame {
	return session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Kind: protocol.Kind_KIND_REGION,
		Map: a.Map, X: a.X, Y: a.Y, Data: data})
}

// MapStats are one map's counters.
type MapStats struct {
	Sessions int64  `json:"sessions"` // sessions on the map now
	Moves    uint64 `json:"moves"`    // placements handled
	Regions  uint64 `json:"regions"`  // region broadcasts handled
	Events   uint64 `json:"events"`   // enter and leave frames sent
}

// MapStats returns each map's counters by name.
func (h *Hub) MapStats() map[string]MapStats {
	out := make(map[string]MapStats, len(h.maps))
	for name, m := range h.maps {
		out[name] = MapStats{Sessions: m.placed.Load(), Moves: m.moves.Load(), Regions: m.regions.Load(), Events: m.events.Load()}
	}
	return out
}
