package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/protocol"
)

// httpGame is a proxy-mode game service on a loopback port.
type httpGame struct {
	*httptest.Server
	newConns, openConns atomic.Int64

	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	Method, Path string
	Header       map[string]string // the X-Herald-* headers
	Body         string
}

func startHTTPGame(t *testing.T, handler http.HandlerFunc) *httpGame {
	t.Helper()
	g := &httpGame{}
	g.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen := seenRequest{Method: r.Method, Path: r.URL.Path, Header: map[string]string{}, Body: string(body)}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Herald-") {
				seen.Header[k] = v[0]
			}
		}
		g.mu.Lock()
		g.reqs = append(g.reqs, seen)
		g.mu.Unlock()
		if handler != nil {
			handler(w, r)
			return
		}
		_, _ = w.Write(append([]byte("http|"), body...))
	}))
	g.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			g.newConns.Add(1)
			g.openConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			g.openConns.Add(-1)
		}
	}
	g.Start()
	t.Cleanup(g.Close)
	return g
}

func (g *httpGame) requests() []seenRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]seenRequest(nil), g.reqs...)
}

func proxyConfig(sc ServiceConfig) Config {
	sc.Protocol = ProtocolHTTP
	return roomConfig(sc)
}

func TestProxyRequest(t *testing.T) {
	g := startHTTPGame(t, nil)
	e := newEnv(t, proxyConfig(ServiceConfig{HTTP: HTTPConfig{Path: "/api/{route}/{method}"}}), WithNode("node-1"))
	e.register("room", "h1", g.URL, nil)

	data, err := e.r.Request(context.Background(), Request{
		Route: "room.join", Session: "s1", User: "alice", Meta: map[string]string{"lang": "fr", "x-trace": "abc"}, Data: []byte(`{"room":7}`),
	})
	if err != nil || string(data) != `http|{"room":7}` {
		t.Fatalf("Request = %q, %v", data, err)
	}
	if err := e.r.Notify(context.Background(), Request{Route: "room.move", Session: "s1", User: "alice", Data: []byte("up")}); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	ev := SessionEvent{Type: protocol.SessionEventType_SESSION_EVENT_DISCONNECTED, Session: "s1", User: "alice", Code: protocol.DisconnectKicked, Reason: "bye"}
	if err := e.r.SessionEvent(context.Background(), ev); err != nil {
		t.Fatalf("SessionEvent to a service that did not ask: %v", err)
	}
	want := []seenRequest{
		{Method: "POST", Path: "/api/room.join/join", Body: `{"room":7}`, Header: map[string]string{
			"X-Herald-Route": "room.join", "X-Herald-Session": "s1", "X-Herald-User": "alice",
			"X-Herald-Meta-Lang": "fr", "X-Herald-Meta-X-Trace": "abc",
		}},
		{Method: "POST", Path: "/api/room.move/move", Body: "up", Header: map[string]string{
			"X-Herald-Route": "room.move", "X-Herald-Session": "s1", "X-Herald-User": "alice", "X-Herald-Notify": "1",
		}},
	}
	if diff := cmp.Diff(want, g.requests()); diff != "" {
		t.Errorf("service received (-want +got):\n%s", diff)
	}
}

func TestProxySessionEvent(t *testing.T) {
	g := startHTTPGame(t, nil)
	e := newEnv(t, proxyConfig(ServiceConfig{SessionEvents: true}), WithNode("node-1"))
	e.register("room", "h1", g.URL, nil)
	ev := SessionEvent{Type: protocol.SessionEventType_SESSION_EVENT_DISCONNECTED, Session: "s1", User: "alice", Code: protocol.DisconnectKicked, Reason: "bye"}
	if err := e.r.SessionEvent(context.Background(), ev); err != nil {
		t.Fatalf("SessionEvent: %v", err)
	}
	want := []seenRequest{{Method: "POST", Path: "/herald/session-event", Header: map[string]string{
		"X-Herald-Event": "disconnected", "X-Herald-Session": "s1", "X-Herald-User": "alice",
		"X-Herald-Node": "node-1", "X-Herald-Code": "3504", "X-Herald-Reason": "bye",
	}}}
	if diff := cmp.Diff(want, g.requests()); diff != "" {
		t.Errorf("service received (-want +got):\n%s", diff)
	}
}

func TestProxyAnswers(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		header   map[string]string
		body     string
		wantCode protocol.Code
		wantIs   error
		reason   string
		counts   bool // counts against the breaker
	}{
		{"game code", 200, map[string]string{"X-Herald-Code": "1042", "X-Herald-Reason": "room is full"}, "", 1042, ErrService, "room is full", false},
		{"game code, body as reason", 422, map[string]string{"X-Herald-Code": "1043"}, "no such seat", 1043, ErrService, "no such seat", false},
		{"bad request", 400, nil, "missing room", protocol.CodeBadRequest, ErrService, "missing room", false},
		{"forbidden", 403, nil, "", protocol.CodePermissionDenied, ErrService, "room: HTTP 403 Forbidden", false},
		{"not found", 404, nil, "", protocol.CodeNotFound, ErrService, "room: HTTP 404 Not Found", false},
		{"too many requests", 429, nil, "slow down", protocol.CodeRateLimited, ErrService, "slow down", false},
		{"server error", 500, nil, "oops", protocol.CodeServiceError, ErrService, "oops", true},
		{"unavailable", 503, nil, "", protocol.CodeUnavailable, ErrUnavailable, "room: HTTP 503 Service Unavailable", true},
		{"gateway timeout", 504, nil, "", protocol.CodeTimeout, ErrTimeout, "room: HTTP 504 Gateway Timeout", true},
		{"teapot", 418, nil, "", protocol.CodeServiceError, ErrService, "room: HTTP 418 I'm a teapot", false},
		{"binary body is not a reason", 500, nil, "\xff\xfe", protocol.CodeServiceError, ErrService, "room: HTTP 500 Internal Server Error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startHTTPGame(t, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			e := newEnv(t, proxyConfig(ServiceConfig{Breaker: breaker.Config{ConsecutiveFailures: 1}}))
			e.register("room", "h1", g.URL, nil)
			_, err := e.request("room.join", "alice", "x")
			var p *protocol.Error
			if !errors.As(err, &p) || p.Code != tt.wantCode || p.Reason != tt.reason {
				t.Fatalf("Request = %v, want code %d reason %q", err, tt.wantCode, tt.reason)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if got := e.r.Instances("room")[0].Breaker == breaker.Open; got != tt.counts {
				t.Errorf("breaker open = %v, want %v", got, tt.counts)
			}
		})
	}
}

func TestProxyKeepAlive(t *testing.T) {
	g := startHTTPGame(t, nil)
	e := newEnv(t, proxyConfig(ServiceConfig{}))
	leave := e.register("room", "h1", g.URL, nil)
	for i := range 200 {
		if _, err := e.request("room.join", "alice", "x"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if n := g.newConns.Load(); n != 1 {
		t.Errorf("200 sequential requests opened %d connections, want 1", n)
	}
	leave()
	waitFor(t, "the pool to close when the instance left", func() bool { return g.openConns.Load() == 0 })
}

// TestProxyDeadInstance: an instance that refuses connections never gets a
// request: the dial fails before anything is sent, so even a route that is not
// idempotent moves to a live instance, and the dead one's breaker opens.
func TestProxyDeadInstance(t *testing.T) {
	live := startHTTPGame(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	e := newEnv(t, proxyConfig(ServiceConfig{Breaker: breaker.Config{ConsecutiveFailures: 2}}))
	e.register("room", "live", live.URL, nil)
	e.register("room", "dead", dead, nil)
	for i := range 20 {
		reply, err := e.request("room.join", "alice", "x")
		if err != nil || string(reply) != "http|x" {
			t.Fatalf("request %d = %q, %v", i, reply, err)
		}
	}
	if !e.sawTransition("room/dead", breaker.Open) {
		t.Error("the dead instance's breaker did not open")
	}
}

func TestProxyLimits(t *testing.T) {
	tests := []struct {
		name     string
		sc       ServiceConfig
		handler  http.HandlerFunc
		meta     map[string]string
		wantCode protocol.Code
	}{
		{"hang", ServiceConfig{Timeout: 50 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			nil, protocol.CodeTimeout},
		{"reply too large", ServiceConfig{HTTP: HTTPConfig{MaxResponseBytes: 10}}, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, strings.Repeat("x", 11))
		}, nil, protocol.CodeServiceError},
		{"metadata key not a header", ServiceConfig{}, nil, map[string]string{"bad key": "v"}, protocol.CodeBadRequest},
		{"metadata value not a header", ServiceConfig{}, nil, map[string]string{"k": "line\r\nbreak"}, protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startHTTPGame(t, tt.handler)
			e := newEnv(t, proxyConfig(tt.sc))
			e.register("room", "h1", g.URL, nil)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, err := e.r.Request(ctx, Request{Route: "room.join", User: "alice", Meta: tt.meta})
			if got := codeOfErr(err); got != tt.wantCode {
				t.Errorf("Request = %v (code %d), want code %d", err, got, tt.wantCode)
			}
		})
	}
}
