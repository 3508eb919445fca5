package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
	"github.com/heraldgg/herald/service"
)

// dialClient connects the client SDK to n over ws or tcp, closed when the test ends.
func dialClient(t testing.TB, n *servertest.Node, tcp bool, codec protocol.Codec, user string, onMsg func(client.Message)) *client.Client {
	t.Helper()
	url := n.WS
	if tcp {
		url = n.TCP
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: url, Codec: codec, User: user, OnMessage: onMsg, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func codeOf(err error) protocol.Code {
	var p *protocol.Error
	if errors.As(err, &p) {
		return p.Code
	}
	return 0
}

// TestRequestDemoService sends req through a node started on the defaults to
// its in-process demo service, over every transport and codec.
func TestRequestDemoService(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c := dialClient(t, n, v.tcp, v.codec, "alice", nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			data := payload(7)
			got, err := c.Request(ctx, "demo.echo", data, map[string]string{"lang": "en"})
			if err != nil {
				t.Fatalf("demo.echo: %v", err)
			}
			if !sameJSON(got, data) {
				t.Fatalf("demo.echo = %s, want %s", got, data)
			}
			got, err = c.Request(ctx, "demo.join", []byte(`{"room":"r1"}`), nil)
			if err != nil {
				t.Fatalf("demo.join: %v", err)
			}
			if !strings.Contains(string(got), `"topic":"room.r1"`) {
				t.Fatalf("demo.join = %s", got)
			}
			got, err = c.Request(ctx, "demo.move", []byte(`{"map":"demo","x":3,"y":4}`), nil)
			if err != nil {
				t.Fatalf("demo.move: %v", err)
			}
			if !strings.Contains(string(got), `"x":3`) {
				t.Fatalf("demo.move = %s", got)
			}
			_, err = c.Request(ctx, "demo.join", []byte(`{"room":"no spaces"}`), nil)
			if codeOf(err) != 1001 {
				t.Fatalf("demo.join with a bad room: %v, want code 1001", err)
			}
		})
	}
}

func TestRequestUnknownRoute(t *testing.T) {
	n := servertest.Start(t, nil)
	c := dialClient(t, n, false, protocol.CodecJSON, "bob", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, route := range []string{"nosuch.method", "demo", "demo.", ".echo", "demo.nosuch"} {
		_, err := c.Request(ctx, route, []byte(`1`), nil)
		if codeOf(err) != protocol.CodeNotFound {
			t.Errorf("%q: %v, want code %d", route, err, protocol.CodeNotFound)
		}
	}
}

// TestDemoJoinDeliversRoomMessages checks the server API's subscribe end to
// end: demo.join subscribes the session through the gRPC API, and the room's
// messages then reach the connection although it never sent sub.
func TestDemoJoinDeliversRoomMessages(t *testing.T) {
	n := servertest.Start(t, nil)
	r, _ := connect(t, n, variants[0], "carol")
	id := r.send(&protocol.Envelope{Op: protocol.Op_OP_REQ, Route: "demo.join", Data: []byte(`{"room":"hall"}`)})
	var replied, subscribed, joined bool
	for !replied || !subscribed || !joined {
		env := r.next()
		switch {
		case env.Op == protocol.Op_OP_REPLY && env.Id == id:
			replied = true
		case env.Op == protocol.Op_OP_SUBSCRIBED && env.Id == 0 && env.Topic == "room.hall":
			subscribed = true
		case env.Op == protocol.Op_OP_MSG && env.Topic == "room.hall":
			// The demo tells the room who joined right after the server API
			// accepted the subscribe, which does not wait for the node to
			// apply it: that message may come before the subscription, so
			// the test publishes again once subscribed.
			joined = true
		default:
			t.Fatalf("unexpected %v", env)
		}
		if replied && subscribed && !joined {
			n.API(t, "/api/publish", map[string]any{"topic": "room.hall", "data": map[string]int{"n": 1}}, nil)
		}
	}
}

// grpcAPI dials the node's server API, with key as the bearer token ("" for none).
func grpcAPI(t testing.TB, n *servertest.Node, key string) protocol.ServerAPIClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if key != "" {
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
			cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key), method, req, reply, cc, opts...)
		}))
	}
	conn, err := grpc.NewClient(n.GRPC, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return protocol.NewServerAPIClient(conn)
}

func TestServerAPIOverGRPC(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Admin.APIKey = "s3cret" })
	var mu sync.Mutex
	var pushes []client.Message
	c := dialClient(t, n, true, protocol.CodecProto, "dave", func(m client.Message) {
		mu.Lock()
		defer mu.Unlock()
		pushes = append(pushes, m)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("no key", func(t *testing.T) {
		for _, key := range []string{"", "wrong"} {
			_, err := grpcAPI(t, n, key).Push(ctx, &protocol.PushRequest{User: "dave", Data: []byte("x")})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("key %q: %v, want Unauthenticated", key, err)
			}
		}
	})
	api := grpcAPI(t, n, "s3cret")
	t.Run("push", func(t *testing.T) {
		if _, err := api.Push(ctx, &protocol.PushRequest{User: "dave", Data: []byte("hello")}); err != nil {
			t.Fatal(err)
		}
		servertest.Eventually(t, 10*time.Second, "push delivered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(pushes) == 1 && string(pushes[0].Data) == "hello" && pushes[0].Kind == protocol.Kind_KIND_PUSH
		})
	})
	t.Run("bad arguments", func(t *testing.T) {
		_, err := api.Push(ctx, &protocol.PushRequest{Data: []byte("x")})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("push to nobody: %v", err)
		}
		_, err = api.Subscribe(ctx, &protocol.SubscribeRequest{Session: c.Session(), Topic: "has space"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("subscribe to a bad topic: %v", err)
		}
	})
	t.Run("regions on an unknown map", func(t *testing.T) {
		_, err := api.BroadcastRegion(ctx, &protocol.BroadcastRegionRequest{Map: "w", Area: &protocol.BroadcastRegionRequest_Radius{Radius: 1}})
		if status.Code(err) != codes.NotFound {
			t.Errorf("BroadcastRegion: %v", err)
		}
		_, err = api.SetPosition(ctx, &protocol.SetPositionRequest{Session: c.Session(), Map: "w"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("SetPosition: %v", err)
		}
	})
	t.Run("kick", func(t *testing.T) {
		if _, err := api.Kick(ctx, &protocol.KickRequest{Session: c.Session(), Reason: "bye"}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("client not kicked")
		}
		if codeOf(c.Err()) != protocol.DisconnectKicked {
			t.Errorf("client ended with %v", c.Err())
		}
	})
}

func TestServerAPISubscribeUser(t *testing.T) {
	n := servertest.Start(t, nil)
	r1, _ := connect(t, n, variants[1], "erin")
	r2, _ := connect(t, n, variants[2], "erin")
	api := grpcAPI(t, n, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := api.Subscribe(ctx, &protocol.SubscribeRequest{User: "erin", Topic: "team.red"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*raw{r1, r2} {
		if env := r.next(); env.Op != protocol.Op_OP_SUBSCRIBED || env.Topic != "team.red" || env.Id != 0 {
			t.Fatalf("got %v, want subscribed to team.red", env)
		}
	}
	if _, err := api.Publish(ctx, &protocol.PublishRequest{Topic: "team.red", Data: payload(1), User: "coach"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*raw{r1, r2} {
		if env := r.next(); env.Op != protocol.Op_OP_MSG || env.Topic != "team.red" || env.User != "coach" {
			t.Fatalf("got %v, want the team's message", env)
		}
	}
	if _, err := api.Unsubscribe(ctx, &protocol.UnsubscribeRequest{User: "erin", Topic: "team.red"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*raw{r1, r2} {
		if env := r.next(); env.Op != protocol.Op_OP_UNSUBSCRIBED || env.Topic != "team.red" {
			t.Fatalf("got %v, want unsubscribed", env)
		}
	}
}

func TestRouterMetrics(t *testing.T) {
	n := servertest.Start(t, nil)
	c := dialClient(t, n, false, protocol.CodecJSON, "frank", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Request(ctx, "demo.echo", []byte(`1`), nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(n.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`herald_router_requests_total{code="ok",node="` + n.Node() + `",service="demo"} 1`,
		`herald_router_request_duration_seconds_count{node="` + n.Node() + `",service="demo"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestNotify sends a req without an id: the service's handler runs as a
// notify, and the client gets no answer for it.
func TestNotify(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := servertest.Start(t, func(c *config.Config) {
		c.Discovery.Static.Services = map[string][]discovery.Instance{"game": {{ID: "g1", Addr: ln.Addr().String()}}}
		c.Router.Services = map[string]router.ServiceConfig{"game": {}}
	})
	svc, err := service.New(service.Config{Name: "game", ID: "g1", Listener: ln, Herald: n.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	notes := make(chan *service.Request, 1)
	svc.Handle("note", func(_ context.Context, req *service.Request) ([]byte, error) {
		notes <- req
		return []byte(`"ignored"`), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	r, _ := connect(t, n, variants[3], "gina")
	b, err := r.codec.Append(nil, &protocol.Envelope{Op: protocol.Op_OP_REQ, Route: "game.note", Data: payload(1)})
	if err != nil {
		t.Fatal(err)
	}
	r.sendPayload(false, b)
	select {
	case req := <-notes:
		if !req.Notify || req.User != "gina" || !sameJSON(req.Data, payload(1)) {
			t.Fatalf("notify = %+v", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the notify did not reach the service")
	}
	if env := r.call(&protocol.Envelope{Op: protocol.Op_OP_PING}); env.Op != protocol.Op_OP_PONG {
		t.Fatalf("after a notify the next frame is %v, want the pong", env)
	}
}
