package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

func get(t *testing.T, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	n := servertest.Start(t, nil)
	r, hello := connect(t, n, variants[0], "carol")
	r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "t"})
	cases := []struct {
		path, want string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/api/stats", `"connections":1`},
		{"/metrics", "herald_connections"},
		{"/metrics", "go_goroutines"},
		{"/debug/pprof/", "goroutine"},
	}
	for _, c := range cases {
		st, body := get(t, n.Admin+c.path, nil)
		if st != 200 || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %.200q, want %q", c.path, st, body, c.want)
		}
	}
	bad := []struct {
		path, body string
		status     int
	}{
		{"/api/publish", `{"topic":"t"`, 400},
		{"/api/publish", `{"topic":"","data":1}`, 400},
		{"/api/publish", `{"topic":"t","data":1,"extra":true}`, 400},
		{"/api/push", `{"data":1}`, 400},
		{"/api/push", `{"user":"nobody-here","data":1}`, 200}, // a push to an absent user is not an error
		{"/api/kick", `{}`, 400},
	}
	for _, c := range bad {
		if st, body := post(t, n.Admin+c.path, c.body, nil); st != c.status {
			t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, st, body, c.status)
		}
	}
	if st, body := get(t, n.Admin+"/api/publish", nil); st != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/publish: %d %s", st, body)
	}

	if st, body := post(t, n.Admin+"/api/kick", `{"session":"`+hello.Session+`","reason":"cheating"}`, nil); st != 200 {
		t.Fatalf("kick: %d %s", st, body)
	}
	code, reason := r.expectDisconnect()
	if code != protocol.DisconnectKicked || !strings.Contains(reason, "cheating") {
		t.Fatalf("kicked client: %d %q", code, reason)
	}
}

func TestAdminAPIKey(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Admin.APIKey = "s3cret" })
	cases := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no key", nil, http.StatusUnauthorized},
		{"wrong key", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"prefix of key", map[string]string{"X-API-Key": "s3cre"}, http.StatusUnauthorized},
		{"bearer", map[string]string{"Authorization": "Bearer s3cret"}, http.StatusOK},
		{"x-api-key", map[string]string{"X-API-Key": "s3cret"}, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if st, body := post(t, n.Admin+"/api/publish", `{"topic":"t","data":1}`, c.header); st != c.status {
				t.Fatalf("publish: %d %s", st, body)
			}
			for _, path := range []string{"/api/stats", "/metrics", "/debug/pprof/"} {
				if st, _ := get(t, n.Admin+path, c.header); st != c.status {
					t.Fatalf("%s: %d", path, st)
				}
			}
		})
	}
	// Probes stay open so orchestrators need no key.
	if st, _ := get(t, n.Admin+"/healthz", nil); st != 200 {
		t.Fatalf("healthz: %d", st)
	}
}

// TestGracefulDrain checks a stop: readiness fails at once, new connections are
// refused, connected clients are told to reconnect, and Shutdown returns.
func TestGracefulDrain(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Drain.Timeout = 5 * time.Second
		c.Gateway.ConnectTimeout = time.Second
	})
	clients := make([]*raw, len(variants))
	for i, v := range variants {
		clients[i], _ = connect(t, n, v, "")
	}
	// A connection that never says connect holds the drain open until its connect
	// deadline, which leaves time to see readiness fail.
	lingerer := dialRaw(t, n, variants[2])

	done := make(chan error, 1)
	go func() { done <- n.Shutdown(context.Background()) }()
	for i, r := range clients {
		code, _ := r.expectDisconnect()
		if code != protocol.DisconnectShutdown || !code.Reconnect() {
			t.Fatalf("%s: code %d", variants[i].name, code)
		}
	}
	servertest.Eventually(t, 5*time.Second, "readyz fails while draining", func() bool {
		st, _ := get(t, n.Admin+"/readyz", nil)
		return st == http.StatusServiceUnavailable
	})
	if c, err := dialTCP(n); err == nil {
		// The listener is closed; at most an already-queued connection is refused.
		_ = c.Close()
		t.Log("a connection was accepted while draining")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if code, _ := lingerer.expectDisconnect(); code != protocol.DisconnectConnectTimeout {
		t.Fatalf("lingering connection ended with %d", code)
	}
}
