package router

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/static"
	"github.com/heraldgg/herald/protocol"
)

// waitTimeout bounds every "eventually": generous for small shared CI
// machines; a passing run waits milliseconds.
const waitTimeout = 15 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// game is an in-process game service instance. Its default handler echoes
// "<id>|<data>", so a reply tells which instance served it.
type game struct {
	protocol.UnimplementedGameServiceServer
	id string

	// handle, when set, answers Request instead of the echo.
	handle func(ctx context.Context, m *protocol.RequestMsg) (*protocol.ReplyMsg, error)

	requests atomic.Int64
	mu       sync.Mutex
	notifies []*protocol.NotifyMsg
	events   []*protocol.SessionEventMsg
	seen     map[string]int // request data → times received
}

func (g *game) Request(ctx context.Context, m *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
	g.requests.Add(1)
	g.mu.Lock()
	if g.seen != nil {
		g.seen[string(m.Data)]++
	}
	g.mu.Unlock()
	if g.handle != nil {
		return g.handle(ctx, m)
	}
	return &protocol.ReplyMsg{Data: append([]byte(g.id+"|"), m.Data...)}, nil
}

func (g *game) Notify(_ context.Context, m *protocol.NotifyMsg) (*protocol.NotifyReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.notifies = append(g.notifies, m)
	return &protocol.NotifyReply{}, nil
}

func (g *game) SessionEvent(_ context.Context, m *protocol.SessionEventMsg) (*protocol.SessionEventReply, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, m)
	return &protocol.SessionEventReply{}, nil
}

// countingListener counts the connections it accepted and those still open.
type countingListener struct {
	net.Listener
	accepted, open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// server is a running game instance.
type server struct {
	*game
	addr string
	srv  *grpc.Server
	lis  *countingListener
}

// startGame serves g on a loopback port until the test ends.
func startGame(t testing.TB, g *game, opts ...grpc.ServerOption) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	srv := grpc.NewServer(opts...)
	if g != nil {
		protocol.RegisterGameServiceServer(srv, g)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(cl)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return &server{game: g, addr: l.Addr().String(), srv: srv, lis: cl}
}

// env is a router on a static registry.
type env struct {
	t   testing.TB
	reg *static.Registry
	r   *Router

	mu          sync.Mutex
	transitions []string // "service/instance: from -> to"
}

func newEnv(t testing.TB, cfg Config, opts ...Option) *env {
	t.Helper()
	reg, err := static.New(static.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, reg: reg}
	opts = append([]Option{WithHooks(Hooks{BreakerStateChange: e.breakerChanged})}, opts...)
	r, err := New(cfg, reg, nil, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.r = r
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		reg.Close()
	})
	waitFor(t, "router ready", r.Ready)
	return e
}

func (e *env) breakerChanged(service, id string, from, to breaker.State) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.transitions = append(e.transitions, service+"/"+id+": "+from.String()+" -> "+to.String())
}

// sawTransition reports whether the breaker of service/id made the move.
func (e *env) sawTransition(id string, to breaker.State) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, tr := range e.transitions {
		if strings.HasPrefix(tr, id+":") && strings.HasSuffix(tr, "-> "+to.String()) {
			return true
		}
	}
	return false
}

// register adds an instance and waits until the router routes to it. The
// returned func removes it again (and waits until the router lets it go).
func (e *env) register(service, id, addr string, tags map[string]string) func() {
	e.t.Helper()
	dereg, err := e.reg.Register(context.Background(), discovery.Instance{Service: service, ID: id, Addr: addr, Tags: tags})
	if err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, service+"/"+id+" routed", func() bool { return e.has(service, id) })
	return func() {
		e.t.Helper()
		_ = dereg(context.Background())
		waitFor(e.t, service+"/"+id+" gone", func() bool { return !e.has(service, id) })
	}
}

func (e *env) has(service, id string) bool {
	for _, in := range e.r.Instances(service) {
		if in.ID == id {
			return true
		}
	}
	return false
}

// request sends one request with a deadline far beyond any route timeout, so
// that a hang shows up as a test failure rather than a stuck test.
func (e *env) request(route, user string, data string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	return e.r.Request(ctx, Request{Route: route, User: user, Session: "s-" + user, Data: []byte(data)})
}

// codeOfErr returns the client code of err, 0 for nil.
func codeOfErr(err error) protocol.Code {
	if err == nil {
		return 0
	}
	var p *protocol.Error
	if !errors.As(err, &p) {
		return protocol.CodeInternal
	}
	return p.Code
}

// servedBy splits an echo reply into the instance and the data.
func servedBy(reply []byte) (id, data string) {
	id, data, _ = strings.Cut(string(reply), "|")
	return id, data
}

// rawCodec lets a test server send bytes that are not a valid reply.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	if b, ok := v.(*[]byte); ok {
		*b = append((*b)[:0], data...)
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }
