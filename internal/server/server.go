// Package server builds one Herald node from its configuration and runs it: the
// broker, the hub, discovery and the router, the gateway, the client listeners,
// the admin API, the gRPC server API and the built-in demo service, started in
// dependency order and stopped in reverse, with a graceful drain in between.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldgg/herald/examples/demo"
	"github.com/heraldgg/herald/internal/admin"
	"github.com/heraldgg/herald/internal/api"
	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/memory"
	"github.com/heraldgg/herald/internal/broker/nats"
	"github.com/heraldgg/herald/internal/broker/redis"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/gateway"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/metrics"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
	"github.com/heraldgg/herald/service"
)

// Server is one Herald node.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	started time.Time

	broker broker.Broker
	hub    *hub.Hub
	gw     *gateway.Gateway
	ws     *transport.WebSocketServer
	tcp    *transport.TCPServer
	admin  *admin.Server

	reg     discovery.Registry
	router  *router.Router
	grpcAPI *api.GRPC // nil when listen.grpc is off
	metrics *prometheus.Registry

	// Set by Start, used by stop.
	demo           *service.Service // nil when listen.demo_service is off
	stopDemo       func()
	deregisterNode func(context.Context)

	// Set by Start when the broker keeps presence.
	stopPresence context.CancelFunc
	presenceDone chan struct{}

	stopOnce sync.Once
	stopErr  error
}

// New builds a node from cfg. Nothing listens until Start.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.Node)
	s := &Server{cfg: cfg, log: log}

	b, err := newBroker(cfg, log)
	if err != nil {
		return nil, err
	}
	s.broker = b
	s.metrics = metrics.NewRegistry(cfg.Node, s.metricsSnapshot)
	if s.reg, err = newRegistry(cfg, log); err != nil {
		return nil, err
	}
	if s.router, err = newRouter(cfg, s.reg, metrics.NewRouter(s.metrics, cfg.Node), log); err != nil {
		_ = s.reg.Close()
		return nil, err
	}
	s.hub = hub.New(cfg.Hub, b, cfg.Gateway.HeartbeatTimeout(), log.With("component", "hub"))
	kind, _ := config.BrokerKind(cfg.Broker.URL)
	if _, ok := b.(broker.Presence); ok && kind != "memory" {
		s.hub.EnablePresence()
	}
	s.gw = gateway.New(cfg.Gateway, cfg.Session, cfg.Node, s.hub, b, log.With("component", "gateway"),
		gateway.WithRouter(s.router))

	var page http.Handler
	if cfg.Listen.DemoPage != nil && *cfg.Listen.DemoPage {
		page = demo.Page(cfg.Listen.WebSocketPath)
	}
	s.ws = transport.NewWebSocket(cfg.Transport, cfg.Listen.Client, cfg.Listen.WebSocketPath, s.gw, page, log.With("component", "websocket"))
	if cfg.Listen.TCP != "off" {
		s.tcp = transport.NewTCP(cfg.Transport, cfg.Listen.TCP, s.gw, log.With("component", "tcp"))
	}
	// One Service behind both doors, so the HTTP and gRPC APIs cannot drift apart.
	apiOpts := []api.Option{api.WithMaps(s.hub)}
	if kind == "memory" {
		apiOpts = append(apiOpts, api.WithPresence(localPresence{s}))
	} else {
		apiOpts = append(apiOpts, api.WithUserRouting())
	}
	svc := api.New(b, cfg.Gateway.MaxTopicLength, cfg.Transport.MaxFrameSize, apiOpts...)
	if cfg.Listen.Admin != "off" {
		s.admin = admin.New(cfg.Admin, svc, func() any { return s.Stats() }, s.metrics, log.With("component", "admin"))
	}
	if cfg.Listen.GRPC != "off" {
		s.grpcAPI = api.NewGRPC(svc, cfg.Admin.APIKey, log.With("component", "api"))
	}
	return s, nil
}

func newBroker(cfg config.Config, log *slog.Logger) (broker.Broker, error) {
	kind, err := config.BrokerKind(cfg.Broker.URL)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "memory":
		return memory.New(cfg.Broker.Memory, cfg.Node), nil
	case "redis":
		rc := cfg.Broker.Redis
		rc.Address = cfg.Broker.URL
		return redis.New(rc, cfg.Node, log.With("component", "broker"))
	case "nats":
		nc := cfg.Broker.NATS
		nc.URL = cfg.Broker.URL
		return nats.New(nc, cfg.Node, log.With("component", "broker"))
	}
	return nil, fmt.Errorf("server: broker %q is not built into this node", kind)
}

// Start connects the broker and opens the listeners. On error everything already
// started is stopped again.
func (s *Server) Start(ctx context.Context) (err error) {
	s.started = time.Now()
	if err := s.broker.Start(ctx, nodeHandler{Hub: s.hub, gw: s.gw}); err != nil {
		return fmt.Errorf("server: start broker: %w", err)
	}
	s.hub.Start()
	defer func() {
		if err != nil {
			_ = s.stop(context.Background())
		}
	}()
	if p, ok := s.broker.(broker.Presence); ok && !s.alone() {
		if _, err := p.Announce(ctx, s.nodeInfo(), s.cfg.Cluster.PresenceTTL); err != nil {
			return fmt.Errorf("server: announce node: %w", err)
		}
		pctx, cancel := context.WithCancel(context.Background())
		s.stopPresence, s.presenceDone = cancel, make(chan struct{})
		go s.runPresence(pctx, p)
	}
	if s.grpcAPI != nil {
		if err := s.grpcAPI.Start(s.cfg.Listen.GRPC); err != nil {
			return fmt.Errorf("server: grpc listener: %w", err)
		}
	}
	if demoOn(s.cfg) {
		if err := s.startDemo(); err != nil {
			return err
		}
	}
	if err := s.router.Start(context.Background()); err != nil {
		return fmt.Errorf("server: router: %w", err)
	}
	if s.admin != nil {
		if err := s.admin.Start(s.cfg.Listen.Admin); err != nil {
			return fmt.Errorf("server: admin listener: %w", err)
		}
	}
	if err := s.ws.Start(); err != nil {
		return fmt.Errorf("server: client listener: %w", err)
	}
	if s.tcp != nil {
		if err := s.tcp.Start(); err != nil {
			return fmt.Errorf("server: tcp listener: %w", err)
		}
	}
	s.registerNode()
	if s.admin != nil {
		s.admin.SetReady(true)
	}
	attrs := []any{"client", s.ws.Addr().String(), "websocket_path", s.cfg.Listen.WebSocketPath, "broker", s.cfg.Broker.URL,
		"discovery", s.cfg.Discovery.Kind, "routes", s.router.Services()}
	if s.tcp != nil {
		attrs = append(attrs, "tcp", s.tcp.Addr().String())
	}
	if s.admin != nil {
		attrs = append(attrs, "admin", s.admin.Addr().String())
	}
	if s.grpcAPI != nil {
		attrs = append(attrs, "grpc", s.grpcAPI.Addr().String())
	}
	if s.demo != nil {
		attrs = append(attrs, "demo_service", s.demo.Addr().String())
	}
	s.log.Info("herald node serving", attrs...)
	return nil
}

// Run starts the node, serves until ctx is done, then drains and stops it.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Shutdown(context.Background())
}

// Shutdown drains the node gracefully: readiness fails at once, the listeners stop
// accepting, every client is told to reconnect elsewhere and its queue is flushed,
// then everything stops. It returns when all clients are gone or the drain timeout
// (config drain.timeout, or ctx) runs out, whichever is first.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Drain.Timeout)
	defer cancel()
	return s.stop(ctx)
}

func (s *Server) stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		begin := time.Now()
		if s.admin != nil {
			s.admin.SetReady(false)
		}
		// Leave discovery first, so nothing new is sent this way while draining.
		if s.deregisterNode != nil {
			s.deregisterNode(ctx)
		}
		s.ws.StopAccepting()
		if s.tcp != nil {
			s.tcp.StopAccepting()
		}
		s.gw.Drain()
		before := s.hub.Connections()
		s.hub.DisconnectAll(protocol.DisconnectShutdown, "node shutting down")
		s.waitGone(ctx)
		left := s.gw.Stats().Connections

		var errs []error
		// The listeners' shutdown closes whatever is left; give it a moment of its own
		// even when the drain used up ctx.
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.ws.Shutdown(closeCtx); err != nil {
			errs = append(errs, fmt.Errorf("websocket: %w", err))
		}
		if s.tcp != nil {
			if err := s.tcp.Shutdown(closeCtx); err != nil {
				errs = append(errs, fmt.Errorf("tcp: %w", err))
			}
		}
		// Requests still in flight have answered or timed out by now: the
		// router, the demo service and the server API are done with.
		s.gw.Close()
		if err := s.router.Close(); err != nil {
			errs = append(errs, fmt.Errorf("router: %w", err))
		}
		if s.stopDemo != nil {
			s.stopDemo()
		}
		if s.grpcAPI != nil {
			if err := s.grpcAPI.Shutdown(closeCtx); err != nil {
				errs = append(errs, fmt.Errorf("grpc: %w", err))
			}
		}
		if err := s.reg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("discovery: %w", err))
		}
		if s.stopPresence != nil {
			s.stopPresence()
			<-s.presenceDone
		}
		s.hub.Close()
		if err := s.broker.Close(); err != nil && !errors.Is(err, broker.ErrClosed) {
			errs = append(errs, fmt.Errorf("broker: %w", err))
		}
		if s.admin != nil {
			if err := s.admin.Shutdown(closeCtx); err != nil {
				errs = append(errs, fmt.Errorf("admin: %w", err))
			}
		}
		s.stopErr = errors.Join(errs...)
		s.log.Info("herald node stopped", "sessions_drained", before, "connections_cut", left,
			"took", time.Since(begin).Round(time.Millisecond))
	})
	return s.stopErr
}

// waitGone waits until every client connection has closed or ctx ends.
func (s *Server) waitGone(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.gw.Stats().Connections > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ClientAddr is the bound WebSocket address.
func (s *Server) ClientAddr() net.Addr { return s.ws.Addr() }

// TCPAddr is the bound raw TCP address, nil when TCP is off.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// AdminAddr is the bound admin address, nil when the admin API is off.
func (s *Server) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.Addr()
}

// Node is this node's name.
func (s *Server) Node() string { return s.cfg.Node }

// GRPCAddr is the bound gRPC server API address, nil when it is off.
func (s *Server) GRPCAddr() net.Addr {
	if s.grpcAPI == nil {
		return nil
	}
	return s.grpcAPI.Addr()
}

// DemoAddr is the bound address of the built-in demo service, nil when it is off
// or before Start.
func (s *Server) DemoAddr() net.Addr {
	if s.demo == nil {
		return nil
	}
	return s.demo.Addr()
}

// Router is the node's router, for tests and operators' tools.
func (s *Server) Router() *router.Router { return s.router }
