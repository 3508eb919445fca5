package router

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/router/balancer"
	"github.com/heraldgg/herald/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func roomConfig(sc ServiceConfig) Config {
	return Config{Services: map[string]ServiceConfig{"room": sc}}
}

func TestRequestReachesService(t *testing.T) {
	var got *protocol.RequestMsg
	var mu sync.Mutex
	g := &game{id: "a", handle: func(_ context.Context, m *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
		mu.Lock()
		got = m
		mu.Unlock()
		return &protocol.ReplyMsg{Data: []byte("welcome")}, nil
	}}
	s := startGame(t, g)
	e := newEnv(t, roomConfig(ServiceConfig{}))
	e.register("room", "a", s.addr, nil)

	data, err := e.r.Request(context.Background(), Request{
		Route: "room.join", Session: "s1", User: "alice", Meta: map[string]string{"lang": "fr"}, Data: []byte(`{"room":7}`),
	})
	if err != nil || string(data) != "welcome" {
		t.Fatalf("Request = %q, %v", data, err)
	}
	want := &protocol.RequestMsg{Route: "room.join", Session: "s1", User: "alice", Meta: map[string]string{"lang": "fr"}, Data: []byte(`{"room":7}`)}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("service received (-want +got):\n%s", diff)
	}
}

func TestServiceAnswers(t *testing.T) {
	tests := []struct {
		name     string
		reply    *protocol.ReplyMsg
		err      error
		wantCode protocol.Code
		wantIs   error
		reason   string
	}{
		{"game code passes through", &protocol.ReplyMsg{Code: 1042, Reason: "room is full"}, nil, 1042, ErrService, "room is full"},
		{"herald code passes through", &protocol.ReplyMsg{Code: uint32(protocol.CodePermissionDenied), Reason: "not yours"}, nil, protocol.CodePermissionDenied, ErrService, "not yours"},
		{"code below the error range", &protocol.ReplyMsg{Code: 7, Reason: "odd"}, nil, protocol.CodeServiceError, ErrService, "odd"},
		{"disconnect code is not an error code", &protocol.ReplyMsg{Code: 3504}, nil, protocol.CodeServiceError, ErrService, ""},
		{"invalid argument", nil, status.Error(codes.InvalidArgument, "room id missing"), protocol.CodeBadRequest, ErrService, "room id missing"},
		{"not found", nil, status.Error(codes.NotFound, "no room 7"), protocol.CodeNotFound, ErrService, "no room 7"},
		{"permission denied", nil, status.Error(codes.PermissionDenied, "banned"), protocol.CodePermissionDenied, ErrService, "banned"},
		{"handler failed", nil, errors.New("nil pointer in room.go:12"), protocol.CodeServiceError, ErrService, "room: service failed (Unknown)"},
		{"internal", nil, status.Error(codes.Internal, "db down"), protocol.CodeServiceError, ErrService, "room: service failed (Internal)"},
		{"resource exhausted", nil, status.Error(codes.ResourceExhausted, "busy"), protocol.CodeOverloaded, ErrOverloaded, "room: service overloaded"},
		{"unavailable", nil, status.Error(codes.Unavailable, "draining"), protocol.CodeUnavailable, ErrUnavailable, "room: service unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &game{id: "a", handle: func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
				return tt.reply, tt.err
			}}
			s := startGame(t, g)
			e := newEnv(t, roomConfig(ServiceConfig{}))
			e.register("room", "a", s.addr, nil)

			_, err := e.request("room.join", "alice", "x")
			var p *protocol.Error
			if !errors.As(err, &p) {
				t.Fatalf("error %v is not a *protocol.Error", err)
			}
			if p.Code != tt.wantCode || p.Reason != tt.reason {
				t.Errorf("client gets %d %q, want %d %q", p.Code, p.Reason, tt.wantCode, tt.reason)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			var re *Error
			if !errors.As(err, &re) || re.Service != "room" || re.Instance != "a" {
				t.Errorf("error %#v does not name room/a", re)
			}
		})
	}
}

func TestUnknownRoute(t *testing.T) {
	e := newEnv(t, roomConfig(ServiceConfig{}))
	for _, route := range []string{"", "room", "room.", ".join", "lobby.join", "room/join"} {
		t.Run(strconv.Quote(route), func(t *testing.T) {
			_, err := e.request(route, "alice", "x")
			if !errors.Is(err, ErrNoRoute) || codeOfErr(err) != protocol.CodeNotFound {
				t.Errorf("Request(%q) = %v, want ErrNoRoute with code not found", route, err)
			}
		})
	}
}

func TestNoInstances(t *testing.T) {
	e := newEnv(t, roomConfig(ServiceConfig{}))
	_, err := e.request("room.join", "alice", "x")
	if !errors.Is(err, ErrUnavailable) || codeOfErr(err) != protocol.CodeUnavailable {
		t.Errorf("Request = %v, want unavailable", err)
	}
}

// TestGarbage: an instance that answers with something that is not a reply,
// or that is not a gRPC server at all, gets a clear code well within the
// route's timeout, never a hang.
func TestGarbage(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T) string // returns the address
		want  protocol.Code
	}{
		{"undecodable reply", func(t *testing.T) string {
			s := startGame(t, nil, grpc.ForceServerCodec(rawCodec{}),
				grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
					var in []byte
					if err := stream.RecvMsg(&in); err != nil {
						return err
					}
					// Field 31 with wire type 7, which does not exist.
					return stream.SendMsg([]byte{0xff, 0xff, 0xff, 0xff})
				}))
			return s.addr
		}, protocol.CodeServiceError},
		{"not a gRPC server", func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			t.Cleanup(func() { l.Close(); wg.Wait() })
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\njunk!"))
					c.Close()
				}
			})
			return l.Addr().String()
		}, protocol.CodeUnavailable},
		{"gRPC server without GameService", func(t *testing.T) string {
			return startGame(t, nil).addr
		}, protocol.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.start(t)
			e := newEnv(t, roomConfig(ServiceConfig{Timeout: 10 * time.Second}))
			e.register("room", "a", addr, nil)
			_, err := e.request("room.join", "alice", "x")
			if got := codeOfErr(err); got != tt.want {
				t.Fatalf("Request = %v (code %d), want code %d", err, got, tt.want)
			}
			if errors.Is(err, ErrTimeout) {
				t.Fatalf("garbage answered with a timeout: %v", err)
			}
		})
	}
}

func TestHangingService(t *testing.T) {
	g := &game{id: "a", handle: func(ctx context.Context, _ *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	s := startGame(t, g)
	e := newEnv(t, roomConfig(ServiceConfig{Timeout: 50 * time.Millisecond, Breaker: breaker.Config{ConsecutiveFailures: 2}}))
	e.register("room", "a", s.addr, nil)

	for i := range 2 {
		_, err := e.request("room.join", "alice", "x")
		if !errors.Is(err, ErrTimeout) || codeOfErr(err) != protocol.CodeTimeout {
			t.Fatalf("request %d = %v, want timeout", i, err)
		}
	}
	// Two timeouts in a row open the breaker: the next request is answered at
	// once instead of waiting out another timeout.
	if !e.sawTransition("room/a", breaker.Open) {
		t.Fatal("breaker did not open after two timeouts")
	}
	_, err := e.request("room.join", "alice", "x")
	if !errors.Is(err, ErrCircuitOpen) || codeOfErr(err) != protocol.CodeCircuitOpen {
		t.Fatalf("request with the breaker open = %v, want circuit open", err)
	}
}

// TestCallerDeadline: a caller whose own deadline is shorter than the route's
// gets a timeout, and the instance is not blamed for it.
func TestCallerDeadline(t *testing.T) {
	g := &game{id: "a", handle: func(ctx context.Context, _ *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	s := startGame(t, g)
	e := newEnv(t, roomConfig(ServiceConfig{Timeout: time.Minute, Breaker: breaker.Config{ConsecutiveFailures: 1}}))
	e.register("room", "a", s.addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := e.r.Request(ctx, Request{Route: "room.join", User: "alice"})
	if codeOfErr(err) != protocol.CodeTimeout {
		t.Fatalf("Request = %v, want timeout", err)
	}
	if st := e.r.Instances("room")[0].Breaker; st != breaker.Closed {
		t.Errorf("breaker %v after the caller's own deadline, want closed", st)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	tests := []struct {
		policy balancer.Policy
		// the request over the limit: spilled to the idle instance, or
		// refused to keep the player on its own instance
		wantSpill bool
	}{
		{balancer.RoundRobin, true},
		{balancer.LeastInFlight, true},
		{balancer.Weighted, true},
		{balancer.Hash, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.policy), func(t *testing.T) {
			release := make(chan struct{})
			entered := make(chan struct{}, 4)
			busy := &game{id: "busy", handle: func(ctx context.Context, _ *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
				entered <- struct{}{}
				<-release
				return &protocol.ReplyMsg{Data: []byte("busy|ok")}, nil
			}}
			e := newEnv(t, roomConfig(ServiceConfig{MaxInFlight: 2, Timeout: time.Minute, Balancer: balancer.Config{Policy: tt.policy}}))
			e.register("room", "busy", startGame(t, busy).addr, nil)

			// Fill the busy instance while it is the only one.
			errs := make(chan error, 2)
			for range 2 {
				go func() { _, err := e.request("room.join", "alice", "x"); errs <- err }()
			}
			<-entered
			<-entered
			_, err := e.request("room.join", "alice", "x")
			if !errors.Is(err, ErrOverloaded) || codeOfErr(err) != protocol.CodeOverloaded {
				t.Errorf("request over the limit = %v, want overloaded", err)
			}
			if n := e.r.Instances("room")[0].InFlight; n != 2 {
				t.Errorf("in flight = %d, want 2", n)
			}

			e.register("room", "idle", startGame(t, &game{id: "idle"}).addr, nil)
			user := "bob"
			if tt.policy == balancer.Hash {
				user = userOn(t, e, "busy")
			}
			reply, err := e.request("room.join", user, "x")
			switch id, _ := servedBy(reply); {
			case tt.wantSpill && (err != nil || id != "idle"):
				t.Errorf("with another instance idle: %q, %v; want it served there", reply, err)
			case !tt.wantSpill && !errors.Is(err, ErrOverloaded):
				t.Errorf("sticky player's instance full: %q, %v; want overloaded", reply, err)
			}

			close(release)
			for range 2 {
				if err := <-errs; err != nil {
					t.Errorf("request under the limit: %v", err)
				}
			}
			if _, err := e.request("room.join", user, "x"); err != nil {
				t.Errorf("request after the others finished: %v", err)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	failing := func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	tests := []struct {
		name       string
		idempotent []string
		route      string
		handlers   []func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error)
		wantErr    error
		wantCalls  int64 // requests received by all instances together
	}{
		{"idempotent route moves on", []string{"get"}, "room.get", []func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error){failing, nil}, nil, 2},
		{"wildcard", []string{"*"}, "room.get", []func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error){failing, nil}, nil, 2},
		{"other route is not retried", []string{"get"}, "room.join", []func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error){failing, nil}, ErrUnavailable, 1},
		{"retries run out", []string{"get"}, "room.get", []func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error){failing, failing, failing, failing}, ErrUnavailable, 3},
		{"service answers are not retried", []string{"get"}, "room.get", []func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error){
			func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
				return &protocol.ReplyMsg{Code: 1001, Reason: "nope"}, nil
			}, nil}, ErrService, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The failing instance must be tried first: hash on a user whose
			// ring position falls on it.
			e := newEnv(t, roomConfig(ServiceConfig{Idempotent: tt.idempotent, Balancer: balancer.Config{Policy: balancer.Hash},
				Breaker: breaker.Config{ConsecutiveFailures: 100}}))
			var games []*game
			for i, h := range tt.handlers {
				g := &game{id: "i" + strconv.Itoa(i), handle: h}
				games = append(games, g)
				e.register("room", g.id, startGame(t, g).addr, nil)
			}
			user := userOn(t, e, "i0")
			_, err := e.request(tt.route, user, "x")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Request = %v, want %v", err, tt.wantErr)
			}
			var calls int64
			for _, g := range games {
				calls += g.requests.Load()
			}
			if calls != tt.wantCalls {
				t.Errorf("instances received %d calls, want %d", calls, tt.wantCalls)
			}
		})
	}
}

// userOn finds a user the hash balancer sends to instance id.
func userOn(t *testing.T, e *env, id string) string {
	t.Helper()
	snap := e.r.services["room"].bal.Snapshot()
	for i := range 10_000 {
		u := "user-" + strconv.Itoa(i)
		if k := snap.Pick(u, nil); k >= 0 && snap.Instance(k).ID == id {
			return u
		}
	}
	t.Fatalf("no user maps to %s", id)
	return ""
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	var mu sync.Mutex
	broken := true
	g := &game{id: "a", handle: func(context.Context, *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return nil, status.Error(codes.Internal, "db down")
		}
		return &protocol.ReplyMsg{Data: []byte("ok")}, nil
	}}
	s := startGame(t, g)
	e := newEnv(t, roomConfig(ServiceConfig{Breaker: breaker.Config{ConsecutiveFailures: 3, Cooldown: 20 * time.Millisecond}}))
	e.register("room", "a", s.addr, nil)

	for i := range 3 {
		if _, err := e.request("room.join", "alice", "x"); codeOfErr(err) != protocol.CodeServiceError {
			t.Fatalf("request %d = %v, want service error", i, err)
		}
	}
	if !e.sawTransition("room/a", breaker.Open) {
		t.Fatal("breaker did not open")
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	// Until the cooldown passes requests are refused at once; after it, one
	// probe gets through, succeeds, and closes the breaker.
	waitFor(t, "a successful request after the cooldown", func() bool {
		_, err := e.request("room.join", "alice", "x")
		if err != nil && !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("request while recovering = %v, want success or circuit open", err)
		}
		return err == nil
	})
	if !e.sawTransition("room/a", breaker.HalfOpen) || !e.sawTransition("room/a", breaker.Closed) {
		t.Errorf("transitions %v, want open -> half_open -> closed", e.transitions)
	}
}

// TestOneConnectionPerInstance: many concurrent requests share one connection,
// which closes when the instance leaves.
func TestOneConnectionPerInstance(t *testing.T) {
	s := startGame(t, &game{id: "a"})
	e := newEnv(t, roomConfig(ServiceConfig{}))
	leave := e.register("room", "a", s.addr, nil)

	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for j := range 20 {
				if _, err := e.request("room.join", "u"+strconv.Itoa(i), strconv.Itoa(j)); err != nil {
					t.Errorf("request: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := s.lis.accepted.Load(); n != 1 {
		t.Errorf("instance accepted %d connections, want 1", n)
	}
	leave()
	waitFor(t, "the connection to close after the instance left", func() bool { return s.lis.open.Load() == 0 })
}

func TestNotifyAndSessionEvents(t *testing.T) {
	room, chat, lobby := &game{id: "room-a"}, &game{id: "chat-a"}, &game{id: "lobby-a"}
	e := newEnv(t, Config{Services: map[string]ServiceConfig{
		"room":  {SessionEvents: true},
		"chat":  {SessionEvents: true},
		"lobby": {},
	}}, WithNode("node-1"))
	e.register("room", "room-a", startGame(t, room).addr, nil)
	e.register("chat", "chat-a", startGame(t, chat).addr, nil)
	e.register("lobby", "lobby-a", startGame(t, lobby).addr, nil)

	if err := e.r.Notify(context.Background(), Request{Route: "room.move", User: "alice", Session: "s1", Data: []byte("up")}); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	wantNotify := []*protocol.NotifyMsg{{Route: "room.move", User: "alice", Session: "s1", Data: []byte("up")}}
	if diff := cmp.Diff(wantNotify, room.notifies, protocmp.Transform()); diff != "" {
		t.Errorf("notifies (-want +got):\n%s", diff)
	}

	ev := SessionEvent{Type: protocol.SessionEventType_SESSION_EVENT_DISCONNECTED, Session: "s1", User: "alice", Code: protocol.DisconnectHeartbeat, Reason: "silent"}
	if err := e.r.SessionEvent(context.Background(), ev); err != nil {
		t.Fatalf("SessionEvent: %v", err)
	}
	want := []*protocol.SessionEventMsg{{Type: ev.Type, Session: "s1", User: "alice", Node: "node-1", Code: uint32(protocol.DisconnectHeartbeat), Reason: "silent"}}
	for _, g := range []*game{room, chat} {
		if diff := cmp.Diff(want, g.events, protocmp.Transform()); diff != "" {
			t.Errorf("%s events (-want +got):\n%s", g.id, diff)
		}
	}
	if len(lobby.events) != 0 {
		t.Errorf("lobby did not ask for events but got %v", lobby.events)
	}
}

func TestClose(t *testing.T) {
	s := startGame(t, &game{id: "a"})
	e := newEnv(t, roomConfig(ServiceConfig{}))
	e.register("room", "a", s.addr, nil)
	if _, err := e.request("room.join", "alice", "x"); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.request("room.join", "alice", "x"); !errors.Is(err, ErrClosed) || codeOfErr(err) != protocol.CodeUnavailable {
		t.Errorf("Request after Close = %v, want ErrClosed", err)
	}
	if err := e.r.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	waitFor(t, "the connection to close", func() bool { return s.lis.open.Load() == 0 })
}

func TestRequestDoneHook(t *testing.T) {
	s := startGame(t, &game{id: "a"})
	type done struct {
		service string
		code    protocol.Code
	}
	var mu sync.Mutex
	var got []done
	e := newEnv(t, roomConfig(ServiceConfig{}), WithHooks(Hooks{RequestDone: func(service string, code protocol.Code, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, done{service, code})
	}}))
	e.register("room", "a", s.addr, nil)
	e.request("room.join", "alice", "x")
	e.request("nope.join", "alice", "x")
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]done{{"room", 0}, {"", protocol.CodeNotFound}}, got, cmp.AllowUnexported(done{})); diff != "" {
		t.Errorf("RequestDone calls (-want +got):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"empty", Config{}, ""},
		{"defaults", roomConfig(ServiceConfig{}), ""},
		{"dotted service", Config{Services: map[string]ServiceConfig{"room.v2": {}}}, "services.room.v2: a service name cannot contain"},
		{"bad name", Config{Services: map[string]ServiceConfig{"room/x": {}}}, "services.room/x: discovery: invalid name"},
		{"protocol", roomConfig(ServiceConfig{Protocol: "udp"}), "services.room.protocol"},
		{"balancer", roomConfig(ServiceConfig{Balancer: balancer.Config{Policy: "random"}}), "services.room.balancer.policy"},
		{"weights", roomConfig(ServiceConfig{Balancer: balancer.Config{Policy: balancer.Weighted, Weights: map[string]int{"a": 90, "b": 20}}}), "services.room.balancer.weights"},
		{"timeout", roomConfig(ServiceConfig{Timeout: -time.Second}), "services.room.timeout"},
		{"retries", roomConfig(ServiceConfig{Retries: 8}), "services.room.retries"},
		{"breaker", roomConfig(ServiceConfig{Breaker: breaker.Config{FailureRatio: 2}}), "services.room.breaker: failure_ratio"},
		{"http path", roomConfig(ServiceConfig{Protocol: ProtocolHTTP, HTTP: HTTPConfig{Path: "join"}}), "services.room.http.path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to mention %q", err, tt.wantErr)
			}
			if _, err := New(tt.cfg, nil, nil); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}
