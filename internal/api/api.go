// Package api is Herald's server API for game services and operators: publish to a
// topic, broadcast to everyone, push to a user or a session, subscribe a session to
// a topic and back, kick. The admin HTTP API (package admin) and the gRPC
// ServerAPI of protocol/backend.proto (GRPC, in this package) are two doors to
// this one implementation, so they always behave the same.
//
// Every fan-out and every instruction to a session goes through the broker, so on
// a cluster each node acts on its own sessions.
//
// Region broadcast and positions (BroadcastRegion, SetPosition) are checked
// against the node's maps (WithMaps); every node of a cluster has the same.
package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/protocol"
)

// Broker is what the API needs of the broker.
type Broker interface {
	Publish(ctx context.Context, topic string, data []byte, opts broker.PublishOptions) (broker.Position, error)
	Broadcast(ctx context.Context, data []byte) error
}

// Service carries out server API calls.
type Service struct {
	broker   Broker
	maxTopic int
	maxData  int
	maps     Maps // nil: no maps, region calls answer not found
	// routeUsers sends controls for a user only to the nodes the registry lists.
	routeUsers bool
	// presence answers Nodes and Presence: the broker's registry, or the node
	// itself when it is alone (WithPresence).
	presence PresenceSource
}

// PresenceSource is what Nodes and Presence read: broker.Presence satisfies it.
type PresenceSource interface {
	Nodes(ctx context.Context) ([]broker.NodeInfo, error)
	TopicUsers(ctx context.Context, topic string) ([]broker.PresenceEntry, error)
}

// WithPresence answers Nodes and Presence from p instead of the broker's
// registry: for a node alone on the memory broker, which keeps no registry.
func WithPresence(p PresenceSource) Option { return func(s *Service) { s.presence = p } }

// WithUserRouting makes pushes, kicks and subscriptions addressed to a user go only
// to the nodes holding the user, as the broker's presence registry knows them,
// instead of to every node. Worth it in a cluster; a single node has nowhere else
// to send.
func WithUserRouting() Option { return func(s *Service) { s.routeUsers = true } }

// New returns a Service. maxTopic and maxData bound topic names and payloads, in bytes.
func New(b Broker, maxTopic, maxData int, opts ...Option) *Service {
	s := &Service{broker: b, maxTopic: maxTopic, maxData: maxData}
	if p, ok := b.(broker.Presence); ok {
		s.presence = p
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Publish appends data to topic and delivers it to its subscribers on every node.
func (s *Service) Publish(ctx context.Context, topic string, data []byte) (broker.Position, error) {
	return s.PublishAs(ctx, topic, "", data)
}

// PublishAs is Publish with user recorded as the publisher, shown to subscribers.
func (s *Service) PublishAs(ctx context.Context, topic, user string, data []byte) (broker.Position, error) {
	// The rule clients' topics follow: a topic clients could never subscribe to is
	// a mistake, not a publication.
	if err := s.checkTopic(topic); err != nil {
		return broker.Position{}, err
	}
	if err := s.checkData(data); err != nil {
		return broker.Position{}, err
	}
	pos, err := s.broker.Publish(ctx, topic, data, broker.PublishOptions{User: user})
	if err != nil {
		return broker.Position{}, unavailable(err)
	}
	return pos, nil
}

// Broadcast delivers data to every session on every node.
func (s *Service) Broadcast(ctx context.Context, data []byte) error {
	if err := s.checkData(data); err != nil {
		return err
	}
	return s.control(ctx, &broker.Control{Kind: broker.ControlBroadcast, Data: data})
}

// Push delivers data to every connection of user, or to the one session.
func (s *Service) Push(ctx context.Context, user, session string, data []byte) error {
	if (user == "") == (session == "") {
		return protocol.Errorf(protocol.CodeBadRequest, "give exactly one of user and session")
	}
	if err := s.checkData(data); err != nil {
		return err
	}
	return s.control(ctx, &broker.Control{Kind: broker.ControlPush, User: user, Session: session, Data: data})
}

// Kick disconnects every connection of user, or the one session, with a terminal code.
func (s *Service) Kick(ctx context.Context, user, session, reason string) error {
	if (user == "") == (session == "") {
		return protocol.Errorf(protocol.CodeBadRequest, "give exactly one of user and session")
	}
	return s.control(ctx, &broker.Control{Kind: broker.ControlKick, User: user, Session: session, Reason: reason})
}

// Subscribe subscribes every connection of user, or the one session, to topic, as
// if the client had sent sub; the client receives a subscribed frame with id 0.
// Subscribing a session already subscribed is not an error.
func (s *Service) Subscribe(ctx context.Context, user, session, topic string) error {
	return s.subscription(ctx, broker.ControlSubscribe, user, session, topic)
}

// Unsubscribe undoes Subscribe (or the client's own sub); the client receives an
// unsubscribed frame with id 0.
func (s *Service) Unsubscribe(ctx context.Context, user, session, topic string) error {
	return s.subscription(ctx, broker.ControlUnsub, user, session, topic)
}

func (s *Service) subscription(ctx context.Context, kind broker.ControlKind, user, session, topic string) error {
	if (user == "") == (session == "") {
		return protocol.Errorf(protocol.CodeBadRequest, "give exactly one of user and session")
	}
	if err := s.checkTopic(topic); err != nil {
		return err
	}
	return s.control(ctx, &broker.Control{Kind: kind, User: user, Session: session, Topic: topic})
}

// checkTopic applies the rule clients' topics follow (see the gateway): UTF-8
// without spaces or control characters, 1 to maxTopic bytes.
func (s *Service) checkTopic(topic string) error {
	if topic == "" || len(topic) > s.maxTopic || !utf8.ValidString(topic) ||
		strings.ContainsFunc(topic, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return protocol.Errorf(protocol.CodeBadTopic, "topic must be 1 to %d bytes of UTF-8 without spaces or control characters", s.maxTopic)
	}
	return nil
}

func (s *Service) checkData(data []byte) error {
	if len(data) > s.maxData {
		return protocol.Errorf(protocol.CodeBadRequest, "data is larger than %d bytes", s.maxData)
	}
	return nil
}

func (s *Service) control(ctx context.Context, c *broker.Control) error {
	b, err := c.Encode()
	if err != nil {
		return fmt.Errorf("api: encode control: %w", err)
	}
	if c.User != "" && c.Session == "" && s.routeUsers {
		if reg, ok := s.broker.(userRegistry); ok {
			return s.toUser(ctx, reg, c.User, b)
		}
	}
	if err := s.broker.Broadcast(ctx, b); err != nil {
		return unavailable(err)
	}
	return nil
}

// userRegistry is the part of a clustered broker that knows which nodes hold a
// user (see broker.Presence).
type userRegistry interface {
	UserNodes(ctx context.Context, user string) ([]string, error)
	SendNode(ctx context.Context, node string, data []byte) error
}

// toUser sends a control message only to the nodes holding user, so a push to one
// player costs one message per node it is on, not one per node of the cluster. If
// the registry cannot answer, or knows no node for the user (who may have just
// connected: nodes send their changes every cluster.presence_flush), every node
// gets it: slower, never lost.
func (s *Service) toUser(ctx context.Context, reg userRegistry, user string, b []byte) error {
	nodes, err := reg.UserNodes(ctx, user)
	if err != nil || len(nodes) == 0 {
		if err := s.broker.Broadcast(ctx, b); err != nil {
			return unavailable(err)
		}
		return nil
	}
	for _, node := range nodes {
		if err := reg.SendNode(ctx, node, b); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// Nodes lists the live nodes of the cluster with their counts.
func (s *Service) Nodes(ctx context.Context) ([]broker.NodeInfo, error) {
	p := s.presence
	if p == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "this broker keeps no presence")
	}
	nodes, err := p.Nodes(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	return nodes, nil
}

// Presence lists the users subscribed to topic across the cluster, with the node
// each is connected to.
func (s *Service) Presence(ctx context.Context, topic string) ([]broker.PresenceEntry, error) {
	if err := s.checkTopic(topic); err != nil {
		return nil, err
	}
	p := s.presence
	if p == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "this broker keeps no presence")
	}
	users, err := p.TopicUsers(ctx, topic)
	if err != nil {
		return nil, unavailable(err)
	}
	return users, nil
}

func unavailable(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return protocol.Errorf(protocol.CodeTimeout, "broker did not answer in time")
	}
	return &protocol.Error{Code: protocol.CodeUnavailable, Reason: "broker unavailable: " + err.Error()}
}
