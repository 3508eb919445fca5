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
