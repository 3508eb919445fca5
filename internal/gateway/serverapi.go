package gateway

import (
	"context"
	"errors"

	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// ServerSubscribe carries out a game service's subscribe (or, with unsubscribe,
// its unsubscribe) on this node's sessions: the session sessionID, or every
// local session of user. The client is told as if it had asked: a subscribed
// (or unsubscribed) frame with id 0. Sessions on other nodes are theirs to
// handle, so finding none here is not an error.
//
// The node calls it from the broker's delivery goroutine when the control
// message arrives; the work waits for the broker and the shards, so it runs on
// a goroutine of its own that Close waits for. The server API has already
// answered the service, so failures are only logged.
func (g *Gateway) ServerSubscribe(user, sessionID, topic string, unsubscribe bool) {
	if g.checkTopic(topic) != nil {
		g.log.Warn("gateway: server subscribe with a bad topic ignored", "topic", topic)
		return
	}
	g.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
		defer cancel()
		var targets []*session.Session
		if sessionID != "" {
			if s, ok := g.hub.Session(sessionID); ok {
				targets = append(targets, s)
			}
		} else {
			var err error
			if targets, err = g.hub.UserSessions(ctx, user); err != nil {
				g.log.Warn("gateway: server subscribe: cannot list the user's sessions", "user", user, "err", err)
				return
			}
		}
		for _, s := range targets {
			var err error
			if unsubscribe {
				if err = g.hub.Unsubscribe(ctx, s, topic); err != nil {
					err = hubError(err, topic)
				} else {
					g.hub.Send(s, session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_UNSUBSCRIBED, Topic: topic}))
				}
			} else {
				err = g.subscribeSession(ctx, s, topic, 0, nil)
			}
			// Asking twice is how a service makes sure; it is not a failure.
			if err != nil && !isCode(err, protocol.CodeAlreadySubscribed) && !isCode(err, protocol.CodeNotSubscribed) {
				g.log.Warn("gateway: server subscribe failed", "session", s.ID, "topic", topic, "unsubscribe", unsubscribe, "err", err)
			}
		}
	})
}

func isCode(err error, c protocol.Code) bool {
	var p *protocol.Error
	return errors.As(err, &p) && p.Code == c
}
