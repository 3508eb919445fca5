// Package redistest runs a real redis-server for tests: on a free loopback
// port, owned by the test, with the faults a broker must survive at hand —
// SIGKILL and restart on the same port, SIGSTOP and SIGCONT.
//
// The redis-server binary must be on PATH (`make deps` installs Debian's
// redis-server package); without it the test is skipped.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a start or restart may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process the test controls. Its methods are safe
// for concurrent use.
type Server struct {
	t       testing.TB
	bin     string
	port    int
	dir     string
	persist bool

	mu     sync.Mutex
	cmd    *exec.Cmd  // Guarded by mu; nil while killed.
	exited chan error // Guarded by mu; receives the process's exit.
}

// Option changes how Start runs the server.
type Option func(*Server)

// Persistent makes the server log every write to an append-only file in a
// temporary directory with appendfsync always, so a restart after Kill keeps
// every acknowledged write: Redis writes and syncs the file before it replies.
// (With everysec it may postpone the write while a background fsync is slow,
// and reply meanwhile, so a kill can lose acknowledged writes.)
func Persistent() Option { return func(s *Server) { s.persist = true } }

// Start starts redis-server on a free 127.0.0.1 port without persistence
// (--save "" --appendonly no) unless Persistent is given. It is killed when
// the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not on PATH; run `make deps`")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	t.Cleanup(s.Kill)
	// Another process may take the port between our probe and redis's bind.
	var last error
	for range 5 {
		s.port = freePort(t)
		if last = s.start(); last == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", last)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's address as a redis:// URL for database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--loglevel", "warning",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
	if s.persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if reply, err := s.Do(ctx, "PING"); err == nil && reply == "PONG" {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %v: %s", err, log)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d not answering after %v", s.port, startTimeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// Kill sends SIGKILL and waits for the process to exit: no shutdown, no final
// save. It is a no-op while the server is down.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once continued
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port and directory, after Kill.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Stop freezes the server with SIGSTOP: connections stay open, nothing answers.
func (s *Server) Stop() { s.signal(syscall.SIGSTOP) }

// Cont resumes a server frozen by Stop.
func (s *Server) Cont() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("redistest: signal %v: server is not running", sig)
		return
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// Do sends one command on a fresh connection and returns its reply as text: a
// status or bulk string, an integer in decimal, or an error for an error
// reply. Arrays are not supported; it is for administrative commands such as
// CLIENT KILL, FLUSHALL or DEBUG.
func (s *Server) Do(ctx context.Context, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redistest: unsupported reply %q", line)
}

// freePort returns a loopback port that was free a moment ago. redis-server
// cannot be handed a listener, and a restart must get the same port back.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
