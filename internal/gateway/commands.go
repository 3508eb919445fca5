package gateway

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

func (g *Gateway) dispatch(cl *client, s *session.Session, env *protocol.Envelope) {
	switch env.Op {
	case protocol.Op_OP_PING:
		g.reply(cl, s, s.Codec, &protocol.Envelope{Op: protocol.Op_OP_PONG, Id: env.Id})
	case protocol.Op_OP_SUB:
		g.subscribe(cl, s, env)
	case protocol.Op_OP_UNSUB:
		g.unsubscribe(cl, s, env)
	case protocol.Op_OP_PUB:
		g.publish(cl, s, env)
	case protocol.Op_OP_REQ:
		g.request(cl, s, env)
	case protocol.Op_OP_MOVE:
		g.move(cl, s, env)
	case protocol.Op_OP_CONNECT:
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeAlreadyConnected, "connect was already sent"))
	default:
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeUnknownOp, "a client may not send %s", env.Op.Name()))
	}
}

// checkTopic validates a topic name: UTF-8, no control characters or spaces, at most
// MaxTopicLength bytes.
func (g *Gateway) checkTopic(topic string) error {
	if topic == "" {
		return protocol.Errorf(protocol.CodeBadTopic, "topic is required")
	}
	if len(topic) > g.cfg.MaxTopicLength {
		return protocol.Errorf(protocol.CodeBadTopic, "topic is longer than %d bytes", g.cfg.MaxTopicLength)
	}
	if !utf8.ValidString(topic) || strings.ContainsFunc(topic, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return protocol.Errorf(protocol.CodeBadTopic, "topic must be UTF-8 without spaces or control characters")
	}
	return nil
}

func (g *Gateway) subscribe(cl *client, s *session.Session, env *protocol.Envelope) {
	if err := g.checkTopic(env.Topic); err != nil {
		g.replyErr(cl, s, s.Codec, env.Id, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
	defer cancel()
	var since *broker.Position
	if env.Since != nil {
		since = &broker.Position{Offset: env.Since.Offset, Epoch: env.Since.Epoch}
	}
	if err := g.subscribeSession(ctx, s, env.Topic, env.Id, since); err != nil {
		g.replyErr(cl, s, s.Codec, env.Id, err)
	}
}

// subscribeSession subscribes s to topic and queues the subscribed frame
// (answering id) and, when since is given and recoverable, the publications
// after it. It returns the error to answer with, having queued nothing.
func (g *Gateway) subscribeSession(ctx context.Context, s *session.Session, topic string, id uint64, since *broker.Position) error {
	if err := g.hub.Subscribe(ctx, s, topic); err != nil {
		return hubError(err, topic)
	}
	req := broker.HistoryRequest{Since: since}
	hist, err := g.broker.History(ctx, topic, req)
	if err != nil {
		_ = g.hub.Unsubscribe(context.Background(), s, topic)
		g.log.Warn("gateway: history unavailable", "topic", topic, "err", err)
		return protocol.Errorf(protocol.CodeUnavailable, "topic history unavailable")
	}
	ack := &protocol.Envelope{Op: protocol.Op_OP_SUBSCRIBED, Id: id, Topic: topic,
		Offset: hist.Position.Offset, Epoch: hist.Position.Epoch}
	start := hist.Position.Offset
	var replay []*session.Frame
	if req.Since != nil {
		ack.Recovered = hist.Recovered && fitsReplay(hist.Publications, s.Config().MaxQueueBytes)
		if !ack.Recovered && hist.Recovered {
			g.log.Info("gateway: replay too large for the session's queue", "session", s.ID, "topic", topic,
				"messages", len(hist.Publications))
		}
		if ack.Recovered {
			start = req.Since.Offset
			replay = make([]*session.Frame, 0, len(hist.Publications))
			for _, p := range hist.Publications {
				f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MSG, Topic: p.Topic,
					Offset: p.Offset, Epoch: p.Epoch, Data: p.Data, User: p.User})
				f.Offset = p.Offset
				replay = append(replay, f)
			}
		}
	}
	g.hub.CompleteSubscribe(s, topic, session.NewFrame(ack), replay, start, hist.Position.Epoch)
	return nil
}

// fitsReplay reports whether a replay takes at most half of a session's queue
// bound, so that it cannot make its own subscriber a slow consumer; a larger gap is
// answered with recovered:false, which tells the client to resynchronise instead of
// being disconnected on every attempt.
func fitsReplay(pubs []broker.Publication, maxQueue int) bool {
	size := 0
	for _, p := range pubs {
		size += len(p.Data) + len(p.Topic) + len(p.Epoch) + len(p.User) + 32 // envelope and framing
	}
	return size <= maxQueue/2
}

func (g *Gateway) unsubscribe(cl *client, s *session.Session, env *protocol.Envelope) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
	defer cancel()
	if err := g.hub.Unsubscribe(ctx, s, env.Topic); err != nil {
		g.replyErr(cl, s, s.Codec, env.Id, hubError(err, env.Topic))
		return
	}
	g.hub.Send(s, session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_UNSUBSCRIBED, Id: env.Id, Topic: env.Topic}))
}

// CanPublish reports whether clients may publish to topic.
func (g *Gateway) CanPublish(topic string) bool {
	for _, p := range g.cfg.ClientPublish {
		// "none" is the documented way to forbid everything, not a topic name.
		if p != "none" && hub.MatchTopic(p, topic) {
			return true
		}
	}
	return false
}

func (g *Gateway) publish(cl *client, s *session.Session, env *protocol.Envelope) {
	if err := g.checkTopic(env.Topic); err != nil {
		g.replyErr(cl, s, s.Codec, env.Id, err)
		return
	}
	if !g.CanPublish(env.Topic) {
		g.log.Info("gateway: publish refused", "session", s.ID, "user", s.User, "topic", env.Topic)
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodePermissionDenied, "clients may not publish to %q", env.Topic))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
	defer cancel()
	pos, err := g.broker.Publish(ctx, env.Topic, env.Data, broker.PublishOptions{User: s.User})
	if err != nil {
		g.log.Warn("gateway: publish failed", "topic", env.Topic, "err", err)
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeUnavailable, "publish failed: broker unavailable"))
		return
	}
	g.published.Add(1)
	g.reply(cl, s, s.Codec, &protocol.Envelope{Op: protocol.Op_OP_PUBLISHED, Id: env.Id, Topic: env.Topic,
		Offset: pos.Offset, Epoch: pos.Epoch})
}

func hubError(err error, topic string) error {
	switch {
	case errors.Is(err, hub.ErrAlreadySubscribed):
		return protocol.Errorf(protocol.CodeAlreadySubscribed, "already subscribed to %q", topic)
	case errors.Is(err, hub.ErrNotSubscribed):
		return protocol.Errorf(protocol.CodeNotSubscribed, "not subscribed to %q", topic)
	case errors.Is(err, hub.ErrTooManySubs):
		return protocol.Errorf(protocol.CodeLimitExceeded, "too many subscriptions")
	case errors.Is(err, context.DeadlineExceeded):
		return protocol.Errorf(protocol.CodeTimeout, "timed out")
	}
	return protocol.Errorf(protocol.CodeUnavailable, "%v", err)
}
