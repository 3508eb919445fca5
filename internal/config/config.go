// Package config loads a Herald node's configuration: built-in defaults, then an
// optional YAML file, then HERALD_* environment variables, then command-line flags,
// each overriding the one before. The tree is built from each package's own Config,
// so a setting is declared, defaulted and documented once, next to the code it
// tunes; docs/configuration.md is rendered from this tree and its doc comments.
//
// Environment variables name a key by its path in upper case, with a double
// underscore between levels: gateway.heartbeat_interval is
// HERALD_GATEWAY__HEARTBEAT_INTERVAL. Lists are comma-separated.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/heraldgg/herald/internal/admin"
	"github.com/heraldgg/herald/internal/broker/memory"
	"github.com/heraldgg/herald/internal/broker/nats"
	"github.com/heraldgg/herald/internal/broker/redis"
	"github.com/heraldgg/herald/internal/discovery/etcd"
	"github.com/heraldgg/herald/internal/discovery/static"
	"github.com/heraldgg/herald/internal/gateway"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/internal/transport"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("config: invalid")

// Config is one node's whole configuration.
type Config struct {
	// Node names this node in the cluster; it must be unique among the nodes sharing
	// a broker. Default: the host name followed by a random suffix.
	Node string `koanf:"node"`
	// Listen holds the addresses the node serves on.
	Listen Listen `koanf:"listen"`
	// Log sets how the node logs.
	Log Log `koanf:"log"`
	// Drain bounds a graceful stop.
	Drain Drain `koanf:"drain"`
	// Transport tunes the WebSocket and TCP listeners.
	Transport transport.Config `koanf:"transport"`
	// Session bounds each client session.
	Session session.Config `koanf:"session"`
	// Hub tunes node-local fan-out.
	Hub hub.Config `koanf:"hub"`
	// Gateway is the client-facing policy: heartbeats, limits, permissions.
	Gateway gateway.Config `koanf:"gateway"`
	// Admin tunes the admin HTTP API.
	Admin admin.Config `koanf:"admin"`
	// Broker picks and tunes the broker that carries messages between nodes.
	Broker Broker `koanf:"broker"`
	// Cluster tunes what nodes share about themselves through the broker.
	Cluster Cluster `koanf:"cluster"`
	// Discovery picks and tunes where game service instances are found.
	Discovery Discovery `koanf:"discovery"`
	// Router sends client requests (req, route "service.method") to game services:
	// which services exist, how each is balanced, protected and reached.
	Router router.Config `koanf:"router"`
	// Runtime tunes the Go runtime of `herald serve`.
	Runtime Runtime `koanf:"runtime"`
}

// Runtime tunes the garbage collector. The GOGC and GOMEMLIMIT environment
// variables, when set, take precedence.
type Runtime struct {
	// GCPercent is how far the heap may grow past what the last collection kept,
	// in percent, before the next collection. A node's heap is mostly the state of
	// long-held connections and its delivery paths allocate little, so Herald
	// collects at 50 rather than Go's 100: about a quarter less memory per idle
	// connection (docs/benchmarks.md) for collections that stay rare. Raise it
	// for a node that trades memory for CPU. Default 50.
	GCPercent int `koanf:"gc_percent"`
	// MemoryLimit is a soft cap on the process's memory, in bytes, past which the
	// collector runs as often as it must (Go's GOMEMLIMIT): set it a little
	// under the container's memory. Default 0 (none).
	MemoryLimit int64 `koanf:"memory_limit"`
}

// Listen holds the node's addresses.
type Listen struct {
	// Client is the address of the client port: WebSocket at WebSocketPath and the
	// demo page at "/". Default ":7000".
	Client string `koanf:"client"`
	// WebSocketPath is the HTTP path clients upgrade to WebSocket on. Default "/ws".
	WebSocketPath string `koanf:"websocket_path"`
	// TCP is the address of the raw TCP client port; "off" disables it. Default ":7001".
	TCP string `koanf:"tcp"`
	// Admin is the address of the admin HTTP API. It binds to loopback by default;
	// set an admin.api_key before exposing it. Default "127.0.0.1:7070".
	Admin string `koanf:"admin"`
	// DemoPage serves the browser demo page at "/" of the client port. Default true.
	DemoPage *bool `koanf:"demo_page"`
	// GRPC is the address of the gRPC server API that game services call to push,
	// publish, broadcast, subscribe sessions and kick; "off" disables it. It binds to
	// loopback by default; set admin.api_key (required as "authorization: Bearer
	// <key>" metadata) before exposing it. Default "127.0.0.1:7071".
	GRPC string `koanf:"grpc"`
	// DemoService is where the built-in demo game service (examples/demo) listens for
	// gRPC. The node runs it in-process, registers it in discovery and routes
	// "demo.*" to it (unless router.services names "demo" itself); "off" disables
	// it. Default "127.0.0.1:0", a free loopback port.
	DemoService string `koanf:"demo_service"`
}

// Log sets logging.
type Log struct {
	// Level is the lowest level logged: debug, info, warn or error. Default "info".
	Level string `koanf:"level"`
	// Format is "text" or "json". Default "text".
	Format string `koanf:"format"`
}

// Drain bounds a graceful stop.
type Drain struct {
	// Timeout is how long a stopping node waits for clients' queues to flush
	// after telling them to reconnect elsewhere. Default 10s.
	Timeout time.Duration `koanf:"timeout"`
}

// Broker picks the broker.
type Broker struct {
	// URL selects the implementation and, for Redis and NATS, the server to use:
	// "memory" (one node, the default), "redis://[user:password@]host:port/db"
	// (rediss:// for TLS) or "nats://host:port". It overrides broker.redis.address
	// and broker.nats.url. Default "memory".
	URL string `koanf:"url"`
	// Memory tunes the embedded broker.
	Memory memory.Config `koanf:"memory"`
	// Redis tunes the Redis broker, used when url is redis:// or rediss://.
	Redis redis.Config `koanf:"redis"`
	// NATS tunes the NATS broker, used when url is nats:// or tls://.
	NATS nats.Config `koanf:"nats"`
}

// Cluster tunes the registry of nodes, users and topic presence kept in the broker.
type Cluster struct {
	// PresenceTTL is how long a node stays listed (and its users reachable by
	// pushes) after it stops announcing itself; it announces every third of it.
	// Default 15s.
	PresenceTTL time.Duration `koanf:"presence_ttl"`
	// PresenceFlush is how often a node sends its users' and subscriptions'
	// changes to the registry, batched. Default 100ms.
	PresenceFlush time.Duration `koanf:"presence_flush"`
}

// Discovery picks where game service instances are found.
type Discovery struct {
	// Kind is "static" (instances listed in discovery.static) or "etcd". Default "static".
	Kind string `koanf:"kind"`
	// Static lists instances by service name.
	Static static.Config `koanf:"static"`
	// Etcd tunes the etcd registry, used when kind is "etcd".
	Etcd etcd.Config `koanf:"etcd"`
}

// Default returns the configuration of a node started with no file, environment or
// flags. Node is left empty; Load fills it.
func Default() Config {
	demo := true
	return Config{
		Listen: Listen{
			Client:        ":7000",
			WebSocketPath: "/ws",
			TCP:           ":7001",
			Admin:         "127.0.0.1:7070",
			DemoPage:      &demo,
			GRPC:          "127.0.0.1:7071",
			DemoService:   "127.0.0.1:0",
		},
		Log:       Log{Level: "info", Format: "text"},
		Drain:     Drain{Timeout: 10 * time.Second},
		Cluster:   Cluster{PresenceTTL: 15 * time.Second, PresenceFlush: 100 * time.Millisecond},
		Transport: transport.Config{}.WithDefaults(),
		Session:   session.Config{}.WithDefaults(),
		Hub:       hub.Config{}.WithDefaults(),
		Gateway:   gateway.Config{}.WithDefaults(),
		Admin:     admin.Config{}.WithDefaults(),
		Broker: Broker{URL: "memory", Memory: memory.Config{}.WithDefaults(),
			Redis: redis.Config{}.WithDefaults(), NATS: nats.Config{}.WithDefaults()},
		Discovery: Discovery{Kind: "static", Etcd: etcd.Config{}.WithDefaults()},
		Runtime:   Runtime{GCPercent: 50},
	}
}

// Validate checks what defaults cannot fix. Errors name the field by its key path
// and wrap ErrInvalid.
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, path, fmt.Sprintf(format, args...)))
	}
	checkAddr := func(path, addr string, allowOff bool) {
		if allowOff && addr == "off" {
			return
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(path, "%q is not host:port", addr)
		}
	}
	checkAddr("listen.client", c.Listen.Client, false)
	checkAddr("listen.tcp", c.Listen.TCP, true)
	checkAddr("listen.admin", c.Listen.Admin, true)
	checkAddr("listen.grpc", c.Listen.GRPC, true)
	checkAddr("listen.demo_service", c.Listen.DemoService, true)
	if !strings.HasPrefix(c.Listen.WebSocketPath, "/") || c.Listen.WebSocketPath == "/" {
		bad("listen.websocket_path", "%q must start with / and not be / itself (the demo page lives there)", c.Listen.WebSocketPath)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is neither text nor json", c.Log.Format)
	}
	if c.Drain.Timeout <= 0 {
		bad("drain.timeout", "must be positive")
	}
	if c.Runtime.GCPercent < 10 {
		bad("runtime.gc_percent", "%d is below 10: the collector would run without pause", c.Runtime.GCPercent)
	}
	if c.Runtime.MemoryLimit < 0 {
		bad("runtime.memory_limit", "must not be negative")
	}
	if c.Cluster.PresenceTTL < time.Second {
		bad("cluster.presence_ttl", "%s is below 1s", c.Cluster.PresenceTTL)
	}
	if c.Session.MaxQueueBytes < c.Transport.MaxFrameSize {
		bad("session.max_queue_bytes", "%d is smaller than transport.max_frame_size %d: one reply could not be queued",
			c.Session.MaxQueueBytes, c.Transport.MaxFrameSize)
	}
	if c.Gateway.HeartbeatInterval < 100*time.Millisecond {
		bad("gateway.heartbeat_interval", "%s is below 100ms", c.Gateway.HeartbeatInterval)
	}
	if err := c.Gateway.Validate(); err != nil {
		bad("gateway", "%v", err)
	}
	if err := c.Hub.Validate(); err != nil {
		bad("hub", "%v", err)
	}
	if _, err := BrokerKind(c.Broker.URL); err != nil {
		bad("broker.url", "%v", err)
	}
	if c.Discovery.Kind != "static" && c.Discovery.Kind != "etcd" {
		bad("discovery.kind", "%q is neither static nor etcd", c.Discovery.Kind)
	}
	if c.Discovery.Kind == "etcd" {
		if err := c.Discovery.Etcd.Validate(); err != nil {
			bad("discovery.etcd", "%v", err)
		}
	}
	if err := c.Router.Validate(); err != nil {
		bad("router", "%v", err)
	}
	return errors.Join(errs...)
}

// BrokerKind returns "memory", "redis" or "nats" for a broker URL.
func BrokerKind(url string) (string, error) {
	switch {
	case url == "memory" || url == "memory://":
		return "memory", nil
	case strings.HasPrefix(url, "redis://"), strings.HasPrefix(url, "rediss://"):
		return "redis", nil
	case strings.HasPrefix(url, "nats://"), strings.HasPrefix(url, "tls://"):
		return "nats", nil
	}
	return "", fmt.Errorf("%q: want memory, redis://host:port/db or nats://host:port", url)
}

// fillNode gives an unnamed node a name unlikely to collide with another process on
// the same host.
func (c *Config) fillNode() {
	if c.Node != "" {
		return
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "herald"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	c.Node = host + "-" + hex.EncodeToString(b[:])
}
