package client

import (
	"bytes"
	"context"
	"fmt"

	"github.com/heraldgg/herald/protocol"
)

// readLoop reads and dispatches frames until the connection breaks, and returns
// why. It runs on the run goroutine, which is the only one that calls handlers, so
// they see frames in arrival order.
func (c *Client) readLoop(cn *conn) error {
	for {
		p, codec, err := cn.readFrame()
		if err != nil {
			select {
			case <-cn.down:
				return cn.cause // the heartbeat or a failed write closed the socket
			default:
				return err
			}
		}
		if len(p) == 0 {
			continue // keep-alive
		}
		e := &cn.env
		if codec == protocol.CodecProto && c.s.BorrowData {
			err = protocol.DecodeProtoBorrowed(p, e)
		} else {
			err = codec.Decode(p, e)
		}
		if err != nil {
			// Skip it rather than drop the connection: a newer server may send an
			// op this client does not know yet.
			c.log.Warn("herald frame not understood", "err", err)
			if e.Id == 0 {
				continue
			}
			if cl := cn.take(e.Id); cl != nil {
				cl.err = fmt.Errorf("client: answer not understood: %w", err)
				c.complete(cn, cl)
			}
			continue
		}
		if err := c.dispatch(cn, e); err != nil {
			return err
		}
	}
}

func (c *Client) dispatch(cn *conn, e *protocol.Envelope) error {
	switch e.Op {
	case protocol.Op_OP_MSG:
		c.deliver(e)
		return nil
	case protocol.Op_OP_ENTER, protocol.Op_OP_LEAVE:
		if fn := c.s.OnEvent; fn != nil {
			kind := EventEnter
			if e.Op == protocol.Op_OP_LEAVE {
				kind = EventLeave
			}
			fn(Event{Kind: kind, Map: e.Map, X: e.X, Y: e.Y, Entity: e.Entity})
		}
		return nil
	case protocol.Op_OP_DISCONNECT:
		return disconnectError(e)
	case protocol.Op_OP_MOVED:
		if e.Id == 0 {
			// Not an answer: a session this one sees moved, or the game placed
			// this session.
			if fn := c.s.OnEvent; fn != nil {
				fn(Event{Kind: EventMoved, Map: e.Map, X: e.X, Y: e.Y, Entity: e.Entity})
			}
			return nil
		}
	}
	if e.Id == 0 {
		if e.Op == protocol.Op_OP_ERROR {
			c.log.Warn("herald error frame", "code", e.Code, "reason", e.Reason)
		}
		return nil
	}
	cl := cn.take(e.Id)
	if cl == nil {
		return nil // a heartbeat pong, or the answer to a call that gave up
	}
	switch e.Op {
	case protocol.Op_OP_ERROR:
		cl.err = &protocol.Error{Code: protocol.Code(e.Code), Reason: e.Reason}
	case cl.want:
		cl.data, cl.recovered = e.Data, e.Recovered
		if c.s.BorrowData {
			// The caller reads the answer on its own goroutine, after the
			// read buffer has moved on.
			cl.data = bytes.Clone(e.Data)
		}
		cl.pos = Position{Offset: e.Offset, Epoch: e.Epoch}
	default:
		cl.err = fmt.Errorf("client: server answered %s to a request for %s", e.Op.Name(), cl.want.Name())
	}
	c.complete(cn, cl)
	return nil
}

// complete hands an answered call back: to its waiting caller, or, for a
// resubscription, to the reconnect's bookkeeping.
func (c *Client) complete(cn *conn, cl *call) {
	if cl.sub != nil {
		c.subscribed(cn, cl)
	}
	if cl.internal {
		c.resubscribed(cn, cl)
		putCall(cl)
		return
	}
	cl.done <- struct{}{}
}

// deliver hands a msg to its subscription or to OnMessage.
func (c *Client) deliver(e *protocol.Envelope) {
	if e.Kind != protocol.Kind_KIND_TOPIC {
		if fn := c.s.OnMessage; fn != nil {
			fn(message(e))
		}
		return
	}
	s := (*c.subs.Load())[e.Topic]
	if s == nil {
		// A subscription the game made for this session on the server (a game
		// service's Subscribe), which this client never asked for.
		if fn := c.s.OnMessage; fn != nil {
			fn(message(e))
		}
		return
	}
	if !s.active {
		return // not confirmed on this connection yet
	}
	if e.Offset != 0 {
		if e.Epoch == s.pos.Epoch && e.Offset <= s.pos.Offset {
			return // a repeat, e.g. replayed after a reconnect
		}
		s.pos = Position{Offset: e.Offset, Epoch: e.Epoch}
	}
	s.handler(message(e))
}

func message(e *protocol.Envelope) Message {
	return Message{
		Kind: e.Kind, Topic: e.Topic, Offset: e.Offset, Epoch: e.Epoch, Data: e.Data,
		Map: e.Map, X: e.X, Y: e.Y, User: e.User, Session: e.Session,
	}
}

// subscribed applies the answer to a sub to its subscription, before any msg that
// follows it is delivered.
func (c *Client) subscribed(cn *conn, cl *call) {
	s := cl.sub
	if cl.err != nil {
		return
	}
	if (*c.subs.Load())[s.topic] != s {
		// Unsubscribed while the sub was on its way: undo it on the server.
		cn.send(context.Background(), &frame{op: protocol.Op_OP_UNSUB, id: c.nextID.Add(1), topic: s.topic}, nil)
		return
	}
	now := cl.pos
	switch {
	case cl.hasSince && cl.recovered:
		// The missed messages follow: keep the old position so they pass the
		// repeat check.
	case cl.hasSince:
		s.pos = now
		if s.onUnrecovered != nil {
			s.onUnrecovered(cl.since, now)
		} else {
			c.log.Warn("herald topic history lost", "topic", s.topic, "since", cl.since.Offset, "now", now.Offset)
		}
	default:
		s.pos = now
	}
	s.active, s.confirmed = true, true
}

// resubscribed ends one resubscription after a reconnect; when it is the last,
// the reconnect is complete. A passing refusal is asked again later (resub.go)
// and counts as answered.
func (c *Client) resubscribed(cn *conn, cl *call) {
	switch {
	case cl.err == nil:
	case passing(cl.err) && (*c.subs.Load())[cl.sub.topic] == cl.sub:
		c.log.Warn("herald resubscribe refused for now; asking again", "topic", cl.sub.topic,
			"attempt", cl.retry+1, "err", cl.err)
		cn.retryLater(cl.sub, cl.since, cl.hasSince, cl.retry)
	default:
		c.removeSub(cl.sub)
		if cl.sub.onError != nil {
			cl.sub.onError(cl.err)
		} else {
			c.log.Warn("herald resubscribe failed", "topic", cl.sub.topic, "err", cl.err)
		}
	}
	if cl.retry > 0 {
		return // the first answer completed the reconnect already
	}
	if cn.resubLeft--; cn.resubLeft == 0 && c.s.OnReconnect != nil {
		c.s.OnReconnect()
	}
}
