package service

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/protocol"
)

// ErrUnsupported is wrapped by a server API call the Herald node does not
// support (gRPC Unimplemented), for example region calls on a build without
// maps.
var ErrUnsupported = errors.New("service: not supported by this Herald")

// Position is a publication's place in its topic's stream.
type Position struct {
	Offset uint64
	Epoch  string
}

// Herald is a client of Herald's server API: one multiplexed gRPC connection,
// made on first use and kept. Calls take effect on every node of the cluster;
// success means Herald accepted the call, not that a player received anything.
// Errors are gRPC statuses (InvalidArgument for a bad field, Unavailable when
// Herald or its broker is down, Unauthenticated for a wrong API key), or wrap
// ErrUnsupported. Safe for concurrent use.
type Herald struct {
	conn *grpc.ClientConn
	api  protocol.ServerAPIClient
}

func newHerald(addr, apiKey string, opts []grpc.DialOption) (*Herald, error) {
	all := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if apiKey != "" {
		bearer := "Bearer " + apiKey
		all = append(all, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", bearer), method, req, reply, cc, opts...)
		}))
	}
	conn, err := grpc.NewClient(addr, append(all, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Herald{conn: conn, api: protocol.NewServerAPIClient(conn)}, nil
}

func (h *Herald) close() { _ = h.conn.Close() }

// API is the generated client, for calls this type does not wrap.
func (h *Herald) API() protocol.ServerAPIClient { return h.api }

// Push sends data to every connection of user.
func (h *Herald) Push(ctx context.Context, user string, data []byte) error {
	_, err := h.api.Push(ctx, &protocol.PushRequest{User: user, Data: data})
	return apiErr("push", err)
}

// PushSession sends data to one session.
func (h *Herald) PushSession(ctx context.Context, session string, data []byte) error {
	_, err := h.api.Push(ctx, &protocol.PushRequest{Session: session, Data: data})
	return apiErr("push", err)
}

// Publish appends data to topic and delivers it to the topic's subscribers.
func (h *Herald) Publish(ctx context.Context, topic string, data []byte) (Position, error) {
	return h.PublishAs(ctx, topic, "", data)
}

// PublishAs is Publish with user shown to subscribers as the publisher.
func (h *Herald) PublishAs(ctx context.Context, topic, user string, data []byte) (Position, error) {
	r, err := h.api.Publish(ctx, &protocol.PublishRequest{Topic: topic, User: user, Data: data})
	if err != nil {
		return Position{}, apiErr("publish", err)
	}
	return Position{Offset: r.Offset, Epoch: r.Epoch}, nil
}

// Broadcast sends data to every connected session.
func (h *Herald) Broadcast(ctx context.Context, data []byte) error {
	_, err := h.api.Broadcast(ctx, &protocol.BroadcastRequest{Data: data})
	return apiErr("broadcast", err)
}

// Subscribe subscribes session to topic, as if the client had sent sub.
func (h *Herald) Subscribe(ctx context.Context, session, topic string) error {
	_, err := h.api.Subscribe(ctx, &protocol.SubscribeRequest{Session: session, Topic: topic})
	return apiErr("subscribe", err)
}

// SubscribeUser subscribes every connection of user to topic.
func (h *Herald) SubscribeUser(ctx context.Context, user, topic string) error {
	_, err := h.api.Subscribe(ctx, &protocol.SubscribeRequest{User: user, Topic: topic})
	return apiErr("subscribe", err)
}

// Unsubscribe undoes Subscribe for session.
func (h *Herald) Unsubscribe(ctx context.Context, session, topic string) error {
	_, err := h.api.Unsubscribe(ctx, &protocol.UnsubscribeRequest{Session: session, Topic: topic})
	return apiErr("unsubscribe", err)
}

// UnsubscribeUser undoes SubscribeUser.
func (h *Herald) UnsubscribeUser(ctx context.Context, user, topic string) error {
	_, err := h.api.Unsubscribe(ctx, &protocol.UnsubscribeRequest{User: user, Topic: topic})
	return apiErr("unsubscribe", err)
}

// SetPosition places session at (x, y) on mapName; an empty mapName takes it
// off every map.
func (h *Herald) SetPosition(ctx context.Context, session, mapName string, x, y float64) error {
	_, err := h.api.SetPosition(ctx, &protocol.SetPositionRequest{Session: session, Map: mapName, X: x, Y: y})
	return apiErr("set position", err)
}

// BroadcastRegion sends r.Data to the sessions within an area of a map.
func (h *Herald) BroadcastRegion(ctx context.Context, r *protocol.BroadcastRegionRequest) error {
	_, err := h.api.BroadcastRegion(ctx, r)
	return apiErr("broadcast region", err)
}

// Kick disconnects every connection of user with a terminal code.
func (h *Herald) Kick(ctx context.Context, user, reason string) error {
	_, err := h.api.Kick(ctx, &protocol.KickRequest{User: user, Reason: reason})
	return apiErr("kick", err)
}

// KickSession disconnects one session with a terminal code.
func (h *Herald) KickSession(ctx context.Context, session, reason string) error {
	_, err := h.api.Kick(ctx, &protocol.KickRequest{Session: session, Reason: reason})
	return apiErr("kick", err)
}

// apiErr names the call in err; status.Code still reads the gRPC code.
func apiErr(call string, err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%w: %s: %s", ErrUnsupported, call, status.Convert(err).Message())
	}
	return fmt.Errorf("service: herald %s: %w", call, err)
}
