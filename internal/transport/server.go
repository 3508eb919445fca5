package transport

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"
)

// Config tunes both listeners.
type Config struct {
	// Pollers is the number of event loops per listener. Default: the number of CPUs.
	Pollers int `koanf:"pollers"`
	// ReadBufferSize is the read buffer each event loop shares among its connections,
	// in bytes. Default 32768.
	ReadBufferSize int `koanf:"read_buffer_size"`
	// MaxFrameSize is the largest frame a client may send, in bytes; a larger one
	// closes the connection. Default 65536.
	MaxFrameSize int `koanf:"max_frame_size"`
	// HandshakeTimeout bounds the HTTP request that upgrades to WebSocket. Default 5s.
	HandshakeTimeout time.Duration `koanf:"handshake_timeout"`
	// AllowedOrigins lists the browser origins (scheme://host[:port]) whose pages may
	// open a WebSocket; "*" allows any. Herald authenticates in the connect frame, not
	// with cookies, so any origin is safe for it; restrict it to keep other sites'
	// pages off your nodes. Requests without an Origin header (non-browser clients)
	// are always allowed. Default ["*"].
	AllowedOrigins []string `koanf:"allowed_origins"`
}

// WithDefaults returns cfg with zero fields set to their documented defaults.
func (cfg Config) WithDefaults() Config {
	if cfg.Pollers <= 0 {
		cfg.Pollers = runtime.NumCPU()
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = 32 << 10
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = 64 << 10
	}
	if cfg.AllowedOrigins == nil {
		cfg.AllowedOrigins = []string{"*"}
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	return cfg
}

// ErrStarted is returned by Start on a listener that already started.
var ErrStarted = errors.New("transport: already started")

// server is what both listeners share: the handler, the listener and the timers of
// connections closing gracefully.
type server struct {
	cfg     Config
	handler Handler
	log     *slog.Logger

	mu      sync.Mutex
	ln      *pausableListener
	lingers map[*Conn]*time.Timer // Guarded by mu.
}

func (s *server) listen(addr string) (func(network, addr string) (net.Listener, error), net.Listener, error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: listen %s: %w", addr, err)
	}
	if s.log != nil {
		routeNBIOLogs(s.log)
	}
	ln := newPausableListener(raw)
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return func(string, string) (net.Listener, error) { return ln, nil }, ln, nil
}

// StopAccepting closes the listening socket so no new connection arrives; existing
// connections stay until Shutdown.
func (s *server) StopAccepting() {
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		ln.Stop()
	}
}

// Addr returns the bound address, or nil before Start.
func (s *server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// lingering closes c after d unless its buffer drains first.
func (s *server) lingering(c *Conn, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lingers == nil {
		s.lingers = make(map[*Conn]*time.Timer)
	}
	if _, ok := s.lingers[c]; ok {
		return
	}
	s.lingers[c] = time.AfterFunc(d, c.Abort)
}

func (s *server) forget(c *Conn) {
	s.mu.Lock()
	if t, ok := s.lingers[c]; ok {
		t.Stop()
		delete(s.lingers, c)
	}
	s.mu.Unlock()
}

func (s *server) stopLingers() {
	s.mu.Lock()
	for c, t := range s.lingers {
		t.Stop()
		delete(s.lingers, c)
	}
	s.mu.Unlock()
}

// closed runs the handler's Closed exactly once for c, with a cleaned-up error.
func (s *server) closed(c *Conn, err error) {
	c.closed.Store(true)
	c.closing.Store(true)
	s.forget(c)
	if isNormalClose(err) {
		err = nil
	}
	s.safely(c, func() { s.handler.Closed(c, err) })
}

// safely runs a handler call, turning a panic into a log line and a closed
// connection: nothing a client sends may take the node down.
func (s *server) safely(c *Conn, f func()) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 8<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.log.Error("transport: handler panicked", "remote", c.remote, "panic", r, "stack", string(buf))
			c.Abort()
		}
	}()
	f()
}

func isNormalClose(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
