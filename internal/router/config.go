package router

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/router/balancer"
)

// Config is the routing table. The zero value routes nothing: every request is
// answered "not found".
type Config struct {
	// Services maps a service name, the part of a route before its first ".",
	// to how Herald reaches that service. Routes of services not listed here are
	// answered "not found" without consulting discovery, so clients cannot make
	// Herald watch names of their choosing. Default: none.
	Services map[string]ServiceConfig `koanf:"services"`
}

// Protocols a service can speak.
const (
	// ProtocolGRPC calls the GameService of protocol/backend.proto.
	ProtocolGRPC = "grpc"
	// ProtocolHTTP is proxy mode: each request is an HTTP POST to the instance.
	ProtocolHTTP = "http"
)

// ServiceConfig is how Herald reaches one game service.
type ServiceConfig struct {
	// Protocol is "grpc" (the service implements GameService) or "http" (proxy
	// mode: a request is a POST with the data as body, see HTTPConfig).
	// Default "grpc".
	Protocol string `koanf:"protocol"`
	// Balancer picks the instance for each request: round robin, least in
	// flight, hash (sticky on the user id) or weighted by tag. Default round
	// robin.
	Balancer balancer.Config `koanf:"balancer"`
	// Timeout bounds a request from the moment the router receives it to its
	// reply, retries included; past it the client is answered "timeout" and the
	// call is cancelled. Default 5s.
	Timeout time.Duration `koanf:"timeout"`
	// MaxInFlight caps the requests this node has in flight to one instance. A
	// request finding every instance at its cap (under the hash policy: its
	// player's instance) is answered "overloaded" at once rather than queued.
	// Default 1024.
	MaxInFlight int `koanf:"max_in_flight"`
	// Idempotent lists the methods (the part of a route after the service name)
	// that are safe to run twice; "*" means every method. A request to one of
	// them that fails on an instance is retried on another. Requests that never
	// reached an instance (its circuit open, its connection down) move to
	// another whatever this says. Default: none.
	Idempotent []string `koanf:"idempotent"`
	// Retries is how many more instances an idempotent request may try after
	// the first one failed. Default 2.
	Retries int `koanf:"retries"`
	// Breaker configures each instance's circuit breaker.
	Breaker breaker.Config `koanf:"breaker"`
	// SessionEvents sends this service an event when a session connects and
	// when it disconnects. Default false.
	SessionEvents bool `koanf:"session_events"`
	// HTTP configures proxy mode; read only when Protocol is "http".
	HTTP HTTPConfig `koanf:"http"`
}

// HTTPConfig is proxy mode. A request becomes
//
//	POST <instance addr><Path>
//	Content-Type: application/octet-stream
//	X-Herald-Route: room.join
//	X-Herald-Session: <session id>
//	X-Herald-User: <user id>
//	X-Herald-Meta-<Key>: <value>      (one per metadata entry)
//
//	<request data>
//
// and a 2xx answer's body is the reply data. A service can fail a request with
// an error code of its own by answering with the header X-Herald-Code (and
// optionally X-Herald-Reason); other statuses map to codes as documented on
// the package. The instance's discovery address is a base URL such as
// "http://10.0.0.7:8080" ("http://" is assumed when it has no scheme).
type HTTPConfig struct {
	// Path is the request path; "{method}" and "{route}" in it are replaced by
	// the route's method ("join") and whole route ("room.join"). Default
	// "/{method}".
	Path string `koanf:"path"`
	// EventPath is where session events are posted, with X-Herald-Event set to
	// "connected" or "disconnected" and an empty body. Default
	// "/herald/session-event".
	EventPath string `koanf:"event_path"`
	// MaxResponseBytes caps a reply body; a longer one fails the request.
	// Default 1048576 (1 MiB).
	MaxResponseBytes int `koanf:"max_response_bytes"`
	// MaxIdleConns is how many keep-alive connections to one instance stay open
	// between requests. Default 64.
	MaxIdleConns int `koanf:"max_idle_conns"`
}

// Defaults, applied by WithDefaults.
const (
	DefaultProtocol         = ProtocolGRPC
	DefaultTimeout          = 5 * time.Second
	DefaultMaxInFlight      = 1024
	DefaultRetries          = 2
	DefaultHTTPPath         = "/{method}"
	DefaultHTTPEventPath    = "/herald/session-event"
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxIdleConns     = 64
)

// WithDefaults returns c with every service's zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Services == nil {
		return c
	}
	svcs := make(map[string]ServiceConfig, len(c.Services))
	for name, s := range c.Services {
		svcs[name] = s.WithDefaults()
	}
	c.Services = svcs
	return c
}

// WithDefaults returns s with every zero field set to its default.
func (s ServiceConfig) WithDefaults() ServiceConfig {
	if s.Protocol == "" {
		s.Protocol = DefaultProtocol
	}
	s.Balancer = s.Balancer.WithDefaults()
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.MaxInFlight == 0 {
		s.MaxInFlight = DefaultMaxInFlight
	}
	if s.Retries == 0 {
		s.Retries = DefaultRetries
	}
	s.Breaker = s.Breaker.WithDefaults()
	if s.HTTP.Path == "" {
		s.HTTP.Path = DefaultHTTPPath
	}
	if s.HTTP.EventPath == "" {
		s.HTTP.EventPath = DefaultHTTPEventPath
	}
	if s.HTTP.MaxResponseBytes == 0 {
		s.HTTP.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if s.HTTP.MaxIdleConns == 0 {
		s.HTTP.MaxIdleConns = DefaultMaxIdleConns
	}
	return s
}

// Validate reports the first invalid setting, as a field path under
// "services", after defaults are applied.
func (c Config) Validate() error {
	names := make([]string, 0, len(c.Services))
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names) // report the same error every time
	for _, name := range names {
		if err := discovery.ValidateName(name); err != nil {
			return fmt.Errorf("services.%s: %w", name, err)
		}
		if strings.Contains(name, ".") {
			return fmt.Errorf("services.%s: a service name cannot contain \".\", which separates it from the method in a route", name)
		}
		if err := c.Services[name].Validate(); err != nil {
			return fmt.Errorf("services.%s.%w", name, err)
		}
	}
	return nil
}

// Validate reports the first invalid setting of s, prefixed with its field
// name, after defaults are applied.
func (s ServiceConfig) Validate() error {
	s = s.WithDefaults()
	if s.Protocol != ProtocolGRPC && s.Protocol != ProtocolHTTP {
		return fmt.Errorf("protocol: %q is neither %q nor %q", s.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	if err := s.Balancer.Validate(); err != nil {
		return fmt.Errorf("balancer.%w", err)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("timeout: %v is negative", s.Timeout)
	}
	if s.MaxInFlight < 0 {
		return fmt.Errorf("max_in_flight: %d is negative", s.MaxInFlight)
	}
	if s.Retries < 0 || s.Retries >= balancer.MaxTried {
		return fmt.Errorf("retries: %d is not in 1..%d", s.Retries, balancer.MaxTried-1)
	}
	if err := s.Breaker.Validate(); err != nil {
		return err // already reads "breaker: <field>: ..."
	}
	if !strings.HasPrefix(s.HTTP.Path, "/") {
		return fmt.Errorf("http.path: %q must start with /", s.HTTP.Path)
	}
	if !strings.HasPrefix(s.HTTP.EventPath, "/") {
		return fmt.Errorf("http.event_path: %q must start with /", s.HTTP.EventPath)
	}
	if s.HTTP.MaxResponseBytes < 0 {
		return fmt.Errorf("http.max_response_bytes: %d is negative", s.HTTP.MaxResponseBytes)
	}
	if s.HTTP.MaxIdleConns < 0 {
		return fmt.Errorf("http.max_idle_conns: %d is negative", s.HTTP.MaxIdleConns)
	}
	return nil
}

// idempotent reports whether method may be retried on another instance.
func (s *ServiceConfig) idempotent(method string) bool {
	for _, m := range s.Idempotent {
		if m == method || m == "*" {
			return true
		}
	}
	return false
}
