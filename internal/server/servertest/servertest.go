// Package servertest starts real Herald nodes on loopback for tests: every
// listener on a free port, a short drain, and teardown when the test ends.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server"
)

// Node is a running node.
type Node struct {
	*server.Server
	Config config.Config
	// WS is the WebSocket URL (ws://127.0.0.1:port/ws), TCP the raw TCP URL
	// (tcp://127.0.0.1:port), Admin the admin base URL (http://127.0.0.1:port).
	WS, TCP, Admin string
	// GRPC is the gRPC server API address (127.0.0.1:port), "" when it is off.
	GRPC string
}

// Config returns the configuration Start uses before mutate: loopback listeners on
// free ports (the built-in demo service included) and a short drain.
func Config(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.Load(config.Sources{Environ: []string{}, Overrides: map[string]any{
		"listen.client": "127.0.0.1:0",
		"listen.tcp":    "127.0.0.1:0",
		"listen.admin":  "127.0.0.1:0",
		"listen.grpc":   "127.0.0.1:0",
		"drain.timeout": "3s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Start runs a node whose config mutate may change (nil keeps Config's), and stops
// it when the test ends. Logs go to the test log when HERALD_TEST_LOG is set.
func Start(t testing.TB, mutate func(*config.Config)) *Node {
	t.Helper()
	cfg := Config(t)
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("HERALD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := &Node{Server: srv, Config: cfg,
		WS: fmt.Sprintf("ws://%s%s", srv.ClientAddr(), cfg.Listen.WebSocketPath)}
	if a := srv.TCPAddr(); a != nil {
		n.TCP = "tcp://" + a.String()
	}
	if a := srv.AdminAddr(); a != nil {
		n.Admin = "http://" + a.String()
	}
	if a := srv.GRPCAddr(); a != nil {
		n.GRPC = a.String()
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return n
}

// API posts body as JSON to the admin path (e.g. "/api/publish") and decodes the
// JSON answer into out (may be nil). It returns the HTTP status.
func (n *Node) API(t testing.TB, path string, body, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, n.Admin+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if n.Config.Admin.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+n.Config.Admin.APIKey)
	}
	return do(t, req, out)
}

// Get fetches an admin path and decodes the JSON answer into out (may be nil).
func (n *Node) Get(t testing.TB, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.Admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Config.Admin.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+n.Config.Admin.APIKey)
	}
	return do(t, req, out)
}

func do(t testing.TB, req *http.Request, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(raw) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %q", req.Method, req.URL.Path, err, raw)
		}
	}
	return resp.StatusCode
}

// Eventually polls cond every 10 ms until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
