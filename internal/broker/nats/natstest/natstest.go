// Package natstest runs an embedded NATS server with JetStream for tests, on a
// loopback port and a temporary store directory, that a test can shut down and
// start again on the same port — with its store, or with the store wiped as if
// the server had lost its disk.
package natstest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds how long a start may take to accept connections.
const readyTimeout = 10 * time.Second

// Server is one embedded NATS server. Its methods are safe for concurrent use.
type Server struct {
	t    testing.TB
	port int
	dir  string

	mu  sync.Mutex
	srv *server.Server // Guarded by mu; nil while shut down.
}

// Start starts a server with JetStream on a free 127.0.0.1 port. It is shut
// down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	t.Cleanup(s.Shutdown)
	// Another process may take the port between our probe and the bind.
	var last error
	for range 5 {
		s.port = freePort(t)
		if last = s.start(); last == nil {
			return s
		}
	}
	t.Fatalf("natstest: start: %v", last)
	return nil
}

// URL is the server's client URL.
func (s *Server) URL() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

func (s *Server) start() error {
	srv, err := server.NewServer(&server.Options{
		Host:               "127.0.0.1",
		Port:               s.port,
		JetStream:          true,
		StoreDir:           s.dir,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  256 << 20,
		NoLog:              true,
		NoSigs:             true,
	})
	if err != nil {
		return err
	}
	go srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return errNotReady
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

var errNotReady = errors.New("natstest: server not ready in time")

// Shutdown stops the server and waits until it is down, clients disconnected.
// It is a no-op while the server is down.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart shuts the server down if it runs and starts it again on the same
// port and store directory: streams and their messages survive.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	if err := s.start(); err != nil {
		s.t.Fatalf("natstest: restart: %v", err)
	}
}

// RestartWiped restarts the server with an empty store directory, as if it
// had lost its disk: every stream is gone.
func (s *Server) RestartWiped() {
	s.t.Helper()
	s.Shutdown()
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Fatalf("natstest: wipe store: %v", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		s.t.Fatalf("natstest: wipe store: %v", err)
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("natstest: restart: %v", err)
	}
}

// freePort returns a loopback port that was free a moment ago. A restart must
// get the same port back, so the server cannot just be given port 0.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
