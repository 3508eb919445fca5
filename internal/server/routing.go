package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"time"

	"github.com/heraldgg/herald/examples/demo"
	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/discovery/etcd"
	"github.com/heraldgg/herald/internal/discovery/static"
	"github.com/heraldgg/herald/internal/gateway"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/metrics"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/service"
)

// NodeService is the discovery name under which Herald nodes register
// themselves (with etcd discovery), so tools and load balancers can find them.
const NodeService = "herald"

func newRegistry(cfg config.Config, log *slog.Logger) (discovery.Registry, error) {
	switch cfg.Discovery.Kind {
	case "etcd":
		r, err := etcd.New(cfg.Discovery.Etcd, log.With("component", "discovery"))
		if err != nil {
			return nil, fmt.Errorf("server: discovery: %w", err)
		}
		return r, nil
	default:
		r, err := static.New(cfg.Discovery.Static)
		if err != nil {
			return nil, fmt.Errorf("server: discovery.static: %w", err)
		}
		return r, nil
	}
}

// demoOn reports whether the node runs the built-in demo service.
func demoOn(cfg config.Config) bool { return cfg.Listen.DemoService != "off" }

// newRouter builds the router over reg, counting into m. With the demo service
// on, "demo" is routed to it unless the configuration routes "demo" itself.
func newRouter(cfg config.Config, reg discovery.Registry, m *metrics.Router, log *slog.Logger) (*router.Router, error) {
	rc := cfg.Router
	if _, ok := rc.Services[demo.ServiceName]; demoOn(cfg) && !ok {
		rc.Services = maps.Clone(rc.Services)
		if rc.Services == nil {
			rc.Services = make(map[string]router.ServiceConfig, 1)
		}
		rc.Services[demo.ServiceName] = router.ServiceConfig{Idempotent: []string{"echo"}}
	}
	return router.New(rc, reg, log.With("component", "router"),
		router.WithNode(cfg.Node),
		router.WithHooks(router.Hooks{
			BreakerStateChange: func(service, _ string, _, to breaker.State) { m.BreakerChanged(service, to.String()) },
			RequestDone:        m.RequestDone,
		}))
}

// startDemo runs the demo service in-process until stopDemo, registered in the
// node's own registry and calling back through the node's server API.
func (s *Server) startDemo() error {
	herald := service.DefaultHerald
	if s.grpcAPI != nil {
		herald = s.grpcAPI.Addr().String()
	}
	id := s.cfg.Node
	if discovery.ValidateName(id) != nil {
		id = "" // the SDK makes one up
	}
	svc, err := demo.NewService(service.Config{
		ID:       id,
		Addr:     s.cfg.Listen.DemoService,
		Registry: s.reg,
		Herald:   herald,
		APIKey:   s.cfg.Admin.APIKey,
		Logger:   s.log.With("component", "demo"),
		// The node stops the demo after its clients are gone; nothing is left to wait for.
		StopTimeout: time.Second,
	})
	if err != nil {
		return fmt.Errorf("server: demo service: %w", err)
	}
	if err := svc.Listen(); err != nil {
		return fmt.Errorf("server: demo service: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Run(ctx); err != nil {
			s.log.Error("server: demo service failed", "err", err)
		}
	}()
	s.demo = svc
	s.stopDemo = func() {
		cancel()
		<-done
	}
	return nil
}

// registerNode announces this node in discovery as NodeService when discovery
// is etcd (a static registry is this process's own, nobody else would see it).
// It retries in the background until it succeeds or the node stops.
func (s *Server) registerNode() {
	if s.cfg.Discovery.Kind != "etcd" || discovery.ValidateName(s.cfg.Node) != nil {
		return
	}
	in := discovery.Instance{Service: NodeService, ID: s.cfg.Node, Addr: advertised(s.ws.Addr()),
		Meta: map[string]string{"websocket_path": s.cfg.Listen.WebSocketPath}}
	if s.tcp != nil {
		in.Meta["tcp"] = advertised(s.tcp.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var deregister func(context.Context) error
	go func() {
		defer close(done)
		wait := 100 * time.Millisecond
		for {
			d, err := s.reg.Register(ctx, in)
			if err == nil {
				deregister = d
				return
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("server: registering the node in discovery failed; retrying", "err", err, "retry", wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
	s.deregisterNode = func(dctx context.Context) {
		cancel()
		<-done
		if deregister != nil {
			if err := deregister(dctx); err != nil {
				s.log.Warn("server: deregistering the node failed; it expires with its lease", "err", err)
			}
		}
	}
}

// advertised is a bound address as other machines reach it: the host name in
// place of an unspecified host.
func advertised(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// nodeHandler is what the broker delivers to: the hub, except for the control
// messages that subscribe sessions on a game service's behalf, which need the
// gateway's subscribe path (history, acknowledgement) and so go there.
type nodeHandler struct {
	*hub.Hub
	gw *gateway.Gateway
}

// Control messages are JSON objects whose first key is the kind (see
// broker.Control.Encode), so the two kinds handled here are told apart by
// prefix without decoding every push and kick twice.
var (
	subPrefix   = []byte(`{"k":"` + string(broker.ControlSubscribe) + `"`)
	unsubPrefix = []byte(`{"k":"` + string(broker.ControlUnsub) + `"`)
)

func (h nodeHandler) HandleControl(data []byte) {
	if !bytes.HasPrefix(data, subPrefix) && !bytes.HasPrefix(data, unsubPrefix) {
		h.Hub.HandleControl(data)
		return
	}
	c, err := broker.DecodeControl(data)
	if err != nil {
		h.Hub.HandleControl(data) // logs and drops it
		return
	}
	h.gw.ServerSubscribe(c.User, c.Session, c.Topic, c.Kind == broker.ControlUnsub)
}
