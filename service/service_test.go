package service_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
	"github.com/heraldgg/herald/service"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nbio's package-level task pool lives as long as the process.
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/taskpool.New.func3"),
	)
}

// within bounds every wait; a passing run waits milliseconds.
const within = 15 * time.Second

// routeTimeout is the game service's route timeout in these tests: short, so
// the hanging handler's test is quick.
const routeTimeout = 300 * time.Millisecond

// run starts svc until the test ends and waits for Run to return then.
func run(t testing.TB, svc *service.Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// gameNode starts a node that routes "game" to the instance listening on ln,
// through static discovery, with the given service config.
func gameNode(t testing.TB, ln net.Listener, sc router.ServiceConfig) *servertest.Node {
	t.Helper()
	return servertest.Start(t, func(c *config.Config) {
		c.Listen.DemoService = "off"
		c.Discovery.Static.Services = map[string][]discovery.Instance{
			"game": {{ID: "g1", Addr: ln.Addr().String()}},
		}
		c.Router.Services = map[string]router.ServiceConfig{"game": sc}
	})
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func dial(t testing.TB, n *servertest.Node, user string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.URL, cfg.User, cfg.MaxRetries = n.WS, user, -1
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
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

// TestAnswers runs one game service behind a real node and checks what a
// client gets for each kind of handler outcome.
func TestAnswers(t *testing.T) {
	ln := listen(t)
	n := gameNode(t, ln, router.ServiceConfig{Timeout: routeTimeout})
	svc, err := service.New(service.Config{Name: "game", ID: "g1", Listener: ln, Herald: n.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	svc.Handle("echo", func(_ context.Context, req *service.Request) ([]byte, error) { return req.Data, nil })
	svc.Handle("who", func(_ context.Context, req *service.Request) ([]byte, error) {
		return []byte(`"` + req.User + "|" + req.Method + "|" + req.Meta["k"] + `"`), nil
	})
	svc.Handle("refuse", func(context.Context, *service.Request) ([]byte, error) {
		return nil, protocol.Errorf(1042, "not your turn")
	})
	svc.Handle("fail", func(context.Context, *service.Request) ([]byte, error) {
		return nil, errors.New("database on fire")
	})
	svc.Handle("panic", func(context.Context, *service.Request) ([]byte, error) { panic("boom") })
	svc.Handle("hang", func(ctx context.Context, _ *service.Request) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	run(t, svc)

	c := dial(t, n, "alice", client.Config{})
	cases := []struct {
		name, route string
		want        string
		code        protocol.Code
	}{
		{"echo", "game.echo", `{"a":1}`, 0},
		{"request fields", "game.who", `"alice|who|v"`, 0},
		{"game's own code", "game.refuse", "", 1042},
		{"plain error", "game.fail", "", protocol.CodeServiceError},
		{"panic", "game.panic", "", protocol.CodeServiceError},
		{"hang", "game.hang", "", protocol.CodeTimeout},
		{"no handler", "game.nosuch", "", protocol.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			got, err := c.Request(ctx, tc.route, []byte(`{"a":1}`), map[string]string{"k": "v"})
			if codeOf(err) != tc.code || (tc.code == 0 && err != nil) {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if tc.code == 0 && string(got) != tc.want {
				t.Fatalf("reply = %s, want %s", got, tc.want)
			}
		})
	}
	if err := c.Err(); err != nil {
		t.Fatalf("client ended: %v", err)
	}
}

// TestHeraldPush has a handler push to the requesting player through the
// server API before it answers.
func TestHeraldPush(t *testing.T) {
	ln := listen(t)
	n := gameNode(t, ln, router.ServiceConfig{})
	svc, err := service.New(service.Config{Name: "game", ID: "g1", Listener: ln, Herald: n.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	svc.Handle("greet", func(ctx context.Context, req *service.Request) ([]byte, error) {
		if err := svc.Herald().Push(ctx, req.User, []byte(`"welcome"`)); err != nil {
			return nil, err
		}
		if err := svc.Herald().PushSession(ctx, req.Session, []byte(`"just you"`)); err != nil {
			return nil, err
		}
		return []byte(`"ok"`), nil
	})
	svc.Handle("where", func(ctx context.Context, req *service.Request) ([]byte, error) {
		if err := svc.Herald().SetPosition(ctx, req.Session, "demo", 1, 2); err != nil {
			return nil, err
		}
		return []byte(`"placed"`), nil
	})
	run(t, svc)

	pushes := make(chan client.Message, 4)
	c := dial(t, n, "bob", client.Config{OnMessage: func(m client.Message) { pushes <- m }})
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if got, err := c.Request(ctx, "game.greet", nil, nil); err != nil || string(got) != `"ok"` {
		t.Fatalf("greet = %s, %v", got, err)
	}
	// A push to the user and one to the session travel separately; either may
	// arrive first.
	want := map[string]bool{`"welcome"`: true, `"just you"`: true}
	for len(want) > 0 {
		select {
		case m := <-pushes:
			if m.Kind != protocol.Kind_KIND_PUSH || !want[string(m.Data)] {
				t.Fatalf("got %+v, want one of the pushes %v", m, want)
			}
			delete(want, string(m.Data))
		case <-ctx.Done():
			t.Fatalf("pushes %v never arrived", want)
		}
	}
	if got, err := c.Request(ctx, "game.where", nil, nil); err != nil || string(got) != `"placed"` {
		t.Fatalf("where = %s, %v", got, err)
	}
}

// TestSessionEvents checks that a service configured for session events hears
// of a client's connect and disconnect.
func TestSessionEvents(t *testing.T) {
	ln := listen(t)
	n := gameNode(t, ln, router.ServiceConfig{SessionEvents: true})
	svc, err := service.New(service.Config{Name: "game", ID: "g1", Listener: ln, Herald: n.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan service.SessionEvent, 8)
	svc.OnSessionEvent(func(_ context.Context, ev service.SessionEvent) { events <- ev })
	run(t, svc)

	c := dial(t, n, "carol", client.Config{})
	session := c.Session()
	next := func() service.SessionEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(within):
			t.Fatal("no session event")
		}
		return service.SessionEvent{}
	}
	ev := next()
	if ev.Type != protocol.SessionEventType_SESSION_EVENT_CONNECTED || ev.Session != session || ev.User != "carol" || ev.Node != n.Node() {
		t.Fatalf("first event %+v", ev)
	}
	_ = c.Close()
	ev = next()
	if ev.Type != protocol.SessionEventType_SESSION_EVENT_DISCONNECTED || ev.Session != session {
		t.Fatalf("second event %+v", ev)
	}
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []service.Config{
		{},
		{Name: "a.b"},
		{Name: "ok", ID: "has/slash"},
		{Name: "ok", Etcd: &service.EtcdConfig{Prefix: "no-slash"}},
	} {
		if _, err := service.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
