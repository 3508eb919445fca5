package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/etcd"
	"github.com/heraldgg/herald/protocol"
)

// Instance is what a service registers in discovery: its name, ID, address,
// weight and tags.
type Instance = discovery.Instance

// EtcdConfig is how a service reaches etcd: endpoints, the key prefix Herald
// watches ("/herald" unless Herald is configured otherwise), the lease TTL.
// The zero value means every default (etcd on 127.0.0.1:2379).
type EtcdConfig = etcd.Config

// Registry announces an instance where Herald looks for it. The registries of
// Herald's discovery (static and etcd) are ones; Config.Etcd builds the etcd
// one. Register blocks until the instance is stored; deregister removes it.
type Registry interface {
	Register(ctx context.Context, in Instance) (deregister func(context.Context) error, err error)
}

// Config describes one instance of a game service. Only Name is required.
type Config struct {
	// Name is the service name: Herald routes "Name.method" here. Required.
	Name string
	// ID identifies this instance among the service's instances. Default: the
	// host name and a random suffix.
	ID string
	// Addr is the address the gRPC server listens on. Default "127.0.0.1:0", a
	// free loopback port.
	Addr string
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
	// Advertise is the address registered in discovery, which Herald dials.
	// Default: the bound address, with the host name in place of an
	// unspecified host (":9000" registers "<hostname>:9000").
	Advertise string
	// Weight is this instance's share of traffic relative to its peers, 1..100.
	// Default 1.
	Weight int
	// Tags select instances for routing policies, for example
	// {"track": "canary"} for a canary release weighted by tag.
	Tags map[string]string
	// Meta is free-form information for operators (version, zone, ...).
	Meta map[string]string

	// Etcd registers the instance in etcd, under a lease kept alive while the
	// service runs. Default nil: see Registry.
	Etcd *EtcdConfig
	// Registry registers the instance somewhere else; it is used when Etcd is
	// nil. With neither, the service registers nowhere and Herald must list it
	// in its static discovery config.
	Registry Registry

	// Herald is the address of Herald's gRPC server API (listen.grpc).
	// Default "127.0.0.1:7071".
	Herald string
	// APIKey is Herald's admin.api_key, sent with every server API call.
	// Default "" (none).
	APIKey string
	// DialOptions are added to the server API connection, for example TLS.
	DialOptions []grpc.DialOption
	// ServerOptions are added to the gRPC server, for example TLS or interceptors.
	// They come after the SDK's own (fixed 1 MiB stream and 16 MiB connection
	// flow-control windows), so they may override those.
	ServerOptions []grpc.ServerOption

	// StopTimeout bounds how long Run waits, once ctx is done, for the calls in
	// flight to finish. Default 10s.
	StopTimeout time.Duration
	// Logger receives the service's diagnostics. Default: discarded.
	Logger *slog.Logger
}

// Defaults for the zero values of Config.
const (
	DefaultAddr        = "127.0.0.1:0"
	DefaultHerald      = "127.0.0.1:7071"
	DefaultStopTimeout = 10 * time.Second
)

// Handler answers one request; see the package doc for what its error means.
type Handler func(ctx context.Context, req *Request) ([]byte, error)

// Request is one player request (or notify) Herald routed to this service.
type Request struct {
	// Route is the full route, "service.method"; Method is the part after the
	// first ".", the name the handler was registered under.
	Route, Method string
	// Session is the sending session (push to it with Herald().PushSession) and
	// User its user id.
	Session, User string
	// Meta is the metadata the player attached; Data the payload.
	Meta map[string]string
	Data []byte
	// Notify is set for a message without a reply: the handler's data is
	// dropped and its error only logged.
	Notify bool
}

// SessionEvent says that a session connected to or disconnected from Herald.
// Herald sends them to services configured with session_events.
type SessionEvent struct {
	// Type is protocol.SessionEventType_SESSION_EVENT_CONNECTED or _DISCONNECTED.
	Type          protocol.SessionEventType
	Session, User string
	// Node is the Herald node holding the session.
	Node string
	// Code and Reason say why a session disconnected.
	Code   protocol.Code
	Reason string
}

// Service is one running instance of a game service. Create it with New.
type Service struct {
	// Immutable after New.
	cfg    Config
	log    *slog.Logger
	herald *Herald

	// Set before Run (Handle, OnSessionEvent), read-only once Run starts.
	handlers map[string]Handler
	onEvent  func(context.Context, SessionEvent)

	mu sync.Mutex
	// Guarded by mu.
	ln      net.Listener
	running bool
}

// New returns a service for cfg. It does no I/O: Run listens, registers and
// connects to Herald.
func New(cfg Config) (*Service, error) {
	if err := discovery.ValidateName(cfg.Name); err != nil {
		return nil, fmt.Errorf("service: name: %w", err)
	}
	if strings.Contains(cfg.Name, ".") {
		return nil, fmt.Errorf("service: name %q: a service name cannot contain \".\", which separates it from the method in a route", cfg.Name)
	}
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	if err := discovery.ValidateName(cfg.ID); err != nil {
		return nil, fmt.Errorf("service: id: %w", err)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Herald == "" {
		cfg.Herald = DefaultHerald
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Etcd != nil {
		if err := cfg.Etcd.Validate(); err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
	}
	log := cfg.Logger.With("service", cfg.Name, "instance", cfg.ID)
	h, err := newHerald(cfg.Herald, cfg.APIKey, cfg.DialOptions)
	if err != nil {
		return nil, fmt.Errorf("service: herald %s: %w", cfg.Herald, err)
	}
	return &Service{cfg: cfg, log: log, herald: h, handlers: make(map[string]Handler), ln: cfg.Listener}, nil
}

// Handle registers fn for the method ("join" answers route "<name>.join").
// Requests for methods without a handler are answered "not found" (110).
// Call it before Run.
func (s *Service) Handle(method string, fn Handler) {
	s.handlers[method] = fn
}

// OnSessionEvent sets the function told about session connects and
// disconnects. Herald sends them only to services configured with
// session_events, and best effort. Call it before Run.
func (s *Service) OnSessionEvent(fn func(ctx context.Context, ev SessionEvent)) {
	s.onEvent = fn
}

// Herald is the client of Herald's server API, usable until Run returns.
func (s *Service) Herald() *Herald { return s.herald }

// Name and ID are the instance's service name and instance ID.
func (s *Service) Name() string { return s.cfg.Name }

// ID is the instance ID registered in discovery.
func (s *Service) ID() string { return s.cfg.ID }

// Listen binds the gRPC listener now rather than in Run, so that Addr is known
// before Run is called. Calling it again does nothing.
func (s *Service) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("service: listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound gRPC address, or nil before Listen or Run.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Run serves until ctx is done: it listens (unless Listen did), serves the
// GameService and gRPC health, and registers the instance in discovery,
// retrying in the background while the registry is unreachable. When ctx ends
// it deregisters, marks itself not serving, lets the calls in flight finish
// (for at most StopTimeout) and closes the server API connection. It returns
// nil after a stop caused by ctx, or the error that stopped serving. Run may
// be called once.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("service: Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	defer s.herald.close()
	if err := s.Listen(); err != nil {
		return err
	}
	ln := s.ln // set by Listen, never changed after

	// Fixed windows turn off gRPC's bandwidth estimator, whose ping per
	// request (sent when data arrives and no ping is outstanding) doubled the
	// writes of a request sent one at a time. ServerOptions may override them.
	opts := append([]grpc.ServerOption{
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(16 << 20),
	}, s.cfg.ServerOptions...)
	srv := grpc.NewServer(opts...)
	protocol.RegisterGameServiceServer(srv, &gameServer{s: s})
	hs := health.NewServer()
	hs.SetServingStatus(protocol.GameService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	reg, closeReg, err := s.registry()
	if err != nil {
		srv.Stop()
		<-served
		return err
	}
	regCtx, stopReg := context.WithCancel(context.Background())
	regDone := make(chan func(context.Context) error, 1)
	go func() { regDone <- s.register(regCtx, reg, ln.Addr()) }()
	s.log.Info("service: serving", "addr", ln.Addr().String(), "herald", s.cfg.Herald)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}

	// Leave discovery first, so Herald stops sending new calls, then let the
	// calls already sent finish.
	stopReg()
	if deregister := <-regDone; deregister != nil {
		dctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopTimeout)
		if err := deregister(dctx); err != nil {
			s.log.Warn("service: deregister failed; the registration expires with its lease", "err", err)
		}
		cancel()
	}
	hs.Shutdown()
	if serveErr == nil {
		graceful := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(graceful)
		}()
		t := time.NewTimer(s.cfg.StopTimeout)
		select {
		case <-graceful:
		case <-t.C:
			s.log.Warn("service: calls still in flight after the stop timeout; cutting them", "timeout", s.cfg.StopTimeout)
			srv.Stop()
			<-graceful
		}
		t.Stop()
		serveErr = <-served
	}
	if closeReg != nil {
		if err := closeReg(); err != nil {
			s.log.Warn("service: closing the registry", "err", err)
		}
	}
	if errors.Is(serveErr, grpc.ErrServerStopped) {
		serveErr = nil
	}
	s.log.Info("service: stopped")
	return serveErr
}

// registry returns where to register, and how to release it when we built it.
func (s *Service) registry() (Registry, func() error, error) {
	if s.cfg.Etcd != nil {
		r, err := etcd.New(*s.cfg.Etcd, s.cfg.Logger)
		if err != nil {
			return nil, nil, fmt.Errorf("service: %w", err)
		}
		return r, r.Close, nil
	}
	return s.cfg.Registry, nil, nil
}

// register registers the instance, retrying with backoff until it succeeds or
// ctx ends; it returns the deregister func, or nil.
func (s *Service) register(ctx context.Context, reg Registry, addr net.Addr) func(context.Context) error {
	if reg == nil {
		return nil
	}
	in := Instance{Service: s.cfg.Name, ID: s.cfg.ID, Addr: advertise(s.cfg.Advertise, addr),
		Weight: s.cfg.Weight, Tags: s.cfg.Tags, Meta: s.cfg.Meta}
	wait := 100 * time.Millisecond
	for {
		deregister, err := reg.Register(ctx, in)
		if err == nil {
			s.log.Info("service: registered", "addr", in.Addr)
			return deregister
		}
		if errors.Is(err, discovery.ErrInvalidInstance) || errors.Is(err, discovery.ErrClosed) {
			s.log.Error("service: cannot register", "err", err)
			return nil
		}
		s.log.Warn("service: register failed; retrying", "err", err, "retry", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// advertise is the address to register: the configured one, or the bound one
// with the host name in place of an unspecified host.
func advertise(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return bound.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// defaultID is the host name and a random suffix, with characters that are
// not allowed in an instance ID replaced.
func defaultID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == ':', r == '-':
			return r
		}
		return '-'
	}, host)
	if host == "" {
		host = "instance"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}
