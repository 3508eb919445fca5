package hub

import (
	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

var _ broker.Handler = (*Hub)(nil)

// HandlePublication turns a broker publication into one shared frame for every
// local subscriber.
func (h *Hub) HandlePublication(pub broker.Publication) {
	f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: pub.Topic,
		Offset: pub.Offset, Epoch: pub.Epoch, Data: pub.Data, User: pub.User})
	f.Offset = pub.Offset
	f.Lossy = h.IsLossy(pub.Topic)
	h.Publication(pub.Topic, f)
}

// HandleControl carries out a cluster-wide instruction on this node's sessions.
func (h *Hub) HandleControl(data []byte) {
	c, err := broker.DecodeControl(data)
	if err != nil {
		h.log.Warn("hub: dropping control message", "err", err)
		return
	}
	switch c.Kind {
	case broker.ControlBroadcast:
		h.Broadcast(session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG,
			Kind: protocol.Kind_KIND_BROADCAST, Data: c.Data}))
	case broker.ControlPush:
		env := &protocol.Envelope{Op: protocol.Op_OP_MSG, Kind: protocol.Kind_KIND_PUSH, Data: c.Data}
		if c.Session != "" {
			env.Session = c.Session
			h.PushSession(c.Session, session.NewFrame(env))
		} else {
			h.PushUser(c.User, session.NewFrame(env))
		}
	case broker.ControlRegion:
		a, ok := ControlArea(c)
		if !ok || h.CheckArea(a) != nil {
			h.log.Warn("hub: dropping a region broadcast with a bad area", "map", c.Map)
			return
		}
		h.Region(a, c.Exclude, RegionFrame(a, c.Data))
	case broker.ControlPosition:
		if s, ok := h.Session(c.Session); ok {
			if err := h.Place(s, c.Map, c.X, c.Y, 0); err != nil {
				h.log.Info("hub: server placement not applied", "session", c.Session, "map", c.Map, "err", err)
			}
		}
	case broker.ControlKick:
		reason := c.Reason
		if c.Session != "" {
			if s, ok := h.Session(c.Session); ok {
				h.Disconnect(s, protocol.DisconnectKicked, reason)
			}
		} else {
			h.KickUser(c.User, protocol.DisconnectKicked, reason)
		}
	default:
		h.log.Warn("hub: unknown control message", "kind", c.Kind)
	}
}

// ControlArea reads the area of a region control message (see broker.Control);
// false when its rectangle is malformed.
func ControlArea(c broker.Control) (Area, bool) {
	a := Area{Map: c.Map, X: c.X, Y: c.Y, Radius: c.Radius}
	switch len(c.Rect) {
	case 0:
	case 4:
		a.Rect = true
		a.MinX, a.MinY, a.MaxX, a.MaxY = c.Rect[0], c.Rect[1], c.Rect[2], c.Rect[3]
	default:
		return Area{}, false
	}
	return a, true
}

// AreaControl is the control message that broadcasts data to a, except to the
// sessions in exclude, on every node.
func AreaControl(a Area, exclude []string, data []byte) *broker.Control {
	c := &broker.Control{Kind: broker.ControlRegion, Map: a.Map, X: a.X, Y: a.Y, Radius: a.Radius,
		Exclude: exclude, Data: data}
	if a.Rect {
		c.Radius = 0
		c.Rect = []float64{a.MinX, a.MinY, a.MaxX, a.MaxY}
	}
	return c
}
