package api_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/internal/api"
	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/protocol"
)

// The API checks areas with the hub's types, which pull in the transport, and
// with it nbio's process-wide task pool.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}

// fakeBroker records what the API asks of the broker, or fails with err.
type fakeBroker struct {
	mu       sync.Mutex
	err      error
	controls []broker.Control
	pubs     []string // topic|user|data
}

func (b *fakeBroker) Publish(_ context.Context, topic string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return broker.Position{}, b.err
	}
	b.pubs = append(b.pubs, topic+"|"+opts.User+"|"+string(data))
	return broker.Position{Offset: uint64(len(b.pubs)), Epoch: "e"}, nil
}

func (b *fakeBroker) Broadcast(_ context.Context, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	c, err := broker.DecodeControl(data)
	if err != nil {
		return err
	}
	b.controls = append(b.controls, c)
	return nil
}

// serve starts the gRPC API on loopback and returns a client sending key.
func serve(t *testing.T, b *fakeBroker, serverKey, clientKey string) protocol.ServerAPIClient {
	t.Helper()
	g := api.NewGRPC(api.New(b, 16, 32), serverKey, nil)
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	conn, err := grpc.NewClient(g.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cl := protocol.NewServerAPIClient(conn)
	if clientKey == "" {
		return cl
	}
	return keyed{cl, clientKey}
}

// keyed adds the bearer token to the calls the tests make.
type keyed struct {
	protocol.ServerAPIClient
	key string
}

func (k keyed) Push(ctx context.Context, r *protocol.PushRequest, opts ...grpc.CallOption) (*protocol.PushReply, error) {
	return k.ServerAPIClient.Push(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+k.key), r, opts...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCallsReachTheBroker(t *testing.T) {
	b := &fakeBroker{}
	c := serve(t, b, "", "")
	if _, err := c.Push(ctx(t), &protocol.PushRequest{Session: "s1", Data: []byte("d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx(t), &protocol.SubscribeRequest{User: "u1", Topic: "room.a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unsubscribe(ctx(t), &protocol.UnsubscribeRequest{Session: "s1", Topic: "room.a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kick(ctx(t), &protocol.KickRequest{User: "u1", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Broadcast(ctx(t), &protocol.BroadcastRequest{Data: []byte("all")}); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Publish(ctx(t), &protocol.PublishRequest{Topic: "t", User: "u1", Data: []byte("p")})
	if err != nil || rep.Offset != 1 || rep.Epoch != "e" {
		t.Fatalf("publish = %v, %v", rep, err)
	}
	want := []broker.Control{
		{Kind: broker.ControlPush, Session: "s1", Data: []byte("d")},
		{Kind: broker.ControlSubscribe, User: "u1", Topic: "room.a"},
		{Kind: broker.ControlUnsub, Session: "s1", Topic: "room.a"},
		{Kind: broker.ControlKick, User: "u1", Reason: "r"},
		{Kind: broker.ControlBroadcast, Data: []byte("all")},
	}
	if len(b.controls) != len(want) {
		t.Fatalf("controls = %+v", b.controls)
	}
	for i, w := range want {
		g := b.controls[i]
		if g.Kind != w.Kind || g.User != w.User || g.Session != w.Session || g.Topic != w.Topic ||
			g.Reason != w.Reason || string(g.Data) != string(w.Data) {
			t.Errorf("control %d = %+v, want %+v", i, g, w)
		}
	}
	if len(b.pubs) != 1 || b.pubs[0] != "t|u1|p" {
		t.Errorf("publications = %q", b.pubs)
	}
}

func TestStatuses(t *testing.T) {
	b := &fakeBroker{}
	c := serve(t, b, "", "")
	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"two targets", func() error {
			_, err := c.Push(ctx(t), &protocol.PushRequest{User: "u", Session: "s"})
			return err
		}, codes.InvalidArgument},
		{"no target", func() error {
			_, err := c.Kick(ctx(t), &protocol.KickRequest{})
			return err
		}, codes.InvalidArgument},
		{"data too large", func() error {
			_, err := c.Broadcast(ctx(t), &protocol.BroadcastRequest{Data: make([]byte, 33)})
			return err
		}, codes.InvalidArgument},
		{"topic too long", func() error {
			_, err := c.Publish(ctx(t), &protocol.PublishRequest{Topic: "this.topic.is.too.long"})
			return err
		}, codes.InvalidArgument},
		{"topic with a space", func() error {
			_, err := c.Subscribe(ctx(t), &protocol.SubscribeRequest{Session: "s", Topic: "a b"})
			return err
		}, codes.InvalidArgument},
		{"region without an area", func() error {
			_, err := c.BroadcastRegion(ctx(t), &protocol.BroadcastRegionRequest{Map: "m"})
			return err
		}, codes.InvalidArgument},
		{"position on a node without maps", func() error {
			_, err := c.SetPosition(ctx(t), &protocol.SetPositionRequest{Session: "s", Map: "m"})
			return err
		}, codes.NotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("code %v, want %v", got, tc.want)
			}
		})
	}
	b.mu.Lock()
	b.err = errors.New("broker down")
	b.mu.Unlock()
	if _, err := c.Push(ctx(t), &protocol.PushRequest{User: "u"}); status.Code(err) != codes.Unavailable {
		t.Errorf("push with the broker down: %v", err)
	}
	b.mu.Lock()
	b.err = context.DeadlineExceeded
	b.mu.Unlock()
	if _, err := c.Publish(ctx(t), &protocol.PublishRequest{Topic: "t"}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("publish with the broker slow: %v", err)
	}
}

func TestAPIKey(t *testing.T) {
	b := &fakeBroker{}
	for _, tc := range []struct {
		name, key string
		want      codes.Code
	}{
		{"none", "", codes.Unauthenticated},
		{"wrong", "nope", codes.Unauthenticated},
		{"right", "k3y", codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, b, "k3y", tc.key)
			_, err := c.Push(ctx(t), &protocol.PushRequest{User: "u"})
			if status.Code(err) != tc.want {
				t.Fatalf("push: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestHealthNeedsNoKey keeps health probes working without the secret.
func TestHealthNeedsNoKey(t *testing.T) {
	g := api.NewGRPC(api.New(&fakeBroker{}, 16, 32), "k3y", nil)
	if err := g.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })
	conn, err := grpc.NewClient(g.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
}
