package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/heraldgg/herald/protocol"
)

// Mode is what load a run generates.
type Mode string

// The modes.
const (
	// ModeIdle opens connections that each subscribe to a topic, holds them, and
	// reports what they cost the node.
	ModeIdle Mode = "idle"
	// ModeFanout subscribes connections to topics and publishes to them, measuring
	// deliveries, latency and loss.
	ModeFanout Mode = "fanout"
	// ModeRequest has connections send requests to a route and measures the answers.
	ModeRequest Mode = "request"
)

// Defaults for the zero values of Config.
const (
	DefaultURL      = "ws://127.0.0.1:7000/ws"
	DefaultTCPURL   = "tcp://127.0.0.1:7001"
	DefaultAdmin    = "http://127.0.0.1:7070"
	DefaultConns    = 1000
	DefaultSize     = 64
	DefaultDuration = 10 * time.Second
	DefaultWarmup   = 2 * time.Second
	DefaultRoute    = "demo.echo"
	DefaultInFlight = 32
	// DefaultPerSource is how many connections share one source address before
	// the next 127.0.0.x is used: well under the ~28,000 ephemeral ports Linux
	// gives one (source, destination) pair, so that TIME_WAIT sockets left by the
	// previous run cannot run a pair out of ports.
	DefaultPerSource = 5000
	// minSize is the smallest payload that holds the timestamp and sequence
	// number (see payload.go).
	minSize = payloadHeader
)

// Config describes one run. The zero value of every field means its documented
// default, except Mode, which is required.
type Config struct {
	// Mode is idle, fanout or request. Required.
	Mode Mode
	// URL of the node's client port: ws://host:7000/ws or tcp://host:7001. Default
	// ws://127.0.0.1:7000/ws, or tcp://127.0.0.1:7001 when Transport is "tcp".
	URL string
	// Transport is "ws" or "tcp"; it must agree with URL when both are given.
	// Default: URL's, else "ws".
	Transport string
	// Codec of every client. Default JSON.
	Codec protocol.Codec
	// Admin is the node's admin API base URL. Default http://127.0.0.1:7070.
	Admin string
	// APIKey is sent to the admin API when set. Default none.
	APIKey string

	// Conns is how many client connections to open: subscribers in idle and
	// fanout, requesters in request. Default 1000.
	Conns int
	// Topics is how many topics the connections subscribe to, round robin.
	// Default 1.
	Topics int
	// Rate is the publish rate in messages per second over all topics (fanout), or
	// the request rate over all connections (request). Default 0: as fast as the
	// node takes (fanout keeps InFlight messages per topic undelivered; request
	// sends the next request when the answer comes).
	Rate float64
	// Size is the payload size in bytes (at least 26, which hold the timestamp).
	// Default 64.
	Size int
	// Duration is how long the measured part lasts. Default 10 s.
	Duration time.Duration
	// Warmup runs the load before measuring, to let caches, pools and the
	// scheduler settle. Default 2 s; a negative value means none.
	Warmup time.Duration
	// Route is the request mode's route. Default "demo.echo".
	Route string
	// InFlight bounds, for fanout as fast as the node takes, how many published
	// messages per topic may be not yet delivered to every subscriber. Default 32.
	InFlight int
	// PerSource is how many connections share one source address; past it, on a
	// loopback target, connections spread over 127.0.0.2, 127.0.0.3… Default 5000.
	PerSource int
	// DialConcurrency is how many connections are opened at once. Default 64.
	DialConcurrency int
	// ProfileDir, when set, receives the node's CPU profile of the measured part
	// and heap and goroutine profiles taken at its end. Default "" (none).
	ProfileDir string
}

// settings is a Config with defaults applied and derived values.
type settings struct {
	Config
	tcp     bool
	sources []netip.Addr // source addresses to bind, round by PerSource; nil: the OS picks
}

func (cfg Config) settings() (settings, error) {
	s := settings{Config: cfg}
	switch cfg.Mode {
	case ModeIdle, ModeFanout, ModeRequest:
	case "":
		return s, errors.New("bench: a mode is required: idle, fanout or request")
	default:
		return s, fmt.Errorf("bench: unknown mode %q: want idle, fanout or request", cfg.Mode)
	}
	switch cfg.Transport {
	case "", "ws", "tcp":
	default:
		return s, fmt.Errorf("bench: unknown transport %q: want ws or tcp", cfg.Transport)
	}
	if s.URL == "" {
		s.URL = DefaultURL
		if cfg.Transport == "tcp" {
			s.URL = DefaultTCPURL
		}
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return s, fmt.Errorf("bench: bad URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
		s.Transport, s.tcp = "ws", false
	case "tcp":
		s.Transport, s.tcp = "tcp", true
	default:
		return s, fmt.Errorf("bench: URL %q: scheme must be ws, wss or tcp", s.URL)
	}
	if cfg.Transport != "" && cfg.Transport != s.Transport {
		return s, fmt.Errorf("bench: transport %s does not match URL %s", cfg.Transport, s.URL)
	}
	if cfg.Codec != protocol.CodecJSON && cfg.Codec != protocol.CodecProto {
		return s, fmt.Errorf("bench: unknown codec %d", cfg.Codec)
	}
	if cfg.Conns < 0 || cfg.Topics < 0 || cfg.Rate < 0 || cfg.Size < 0 || cfg.Duration < 0 ||
		cfg.InFlight < 0 || cfg.PerSource < 0 || cfg.DialConcurrency < 0 {
		return s, errors.New("bench: counts, rates, sizes and durations must not be negative")
	}
	s.Admin = orDefault(s.Admin, DefaultAdmin)
	s.Conns = orDefault(s.Conns, DefaultConns)
	s.Topics = orDefault(s.Topics, 1)
	s.Size = orDefault(s.Size, DefaultSize)
	s.Duration = orDefault(s.Duration, DefaultDuration)
	s.Route = orDefault(s.Route, DefaultRoute)
	s.InFlight = orDefault(s.InFlight, DefaultInFlight)
	s.PerSource = orDefault(s.PerSource, DefaultPerSource)
	s.DialConcurrency = orDefault(s.DialConcurrency, 64)
	switch {
	case s.Warmup == 0:
		s.Warmup = DefaultWarmup
	case s.Warmup < 0:
		s.Warmup = 0
	}
	if s.Size < minSize {
		return s, fmt.Errorf("bench: size %d is below %d, the bytes that carry the send time and sequence number", s.Size, minSize)
	}
	if s.Mode != ModeRequest && s.Topics > s.Conns {
		return s, fmt.Errorf("bench: %d topics for %d connections leaves topics without subscribers", s.Topics, s.Conns)
	}
	s.sources = sourceAddrs(u.Hostname(), s.Conns, s.PerSource)
	return s, nil
}

// sourceAddrs returns the source addresses that n connections to host spread over:
// none (the OS picks) unless host is on loopback and n passes perSource, since only
// loopback lets one machine own the whole 127.0.0.0/8.
func sourceAddrs(host string, n, perSource int) []netip.Addr {
	if n <= perSource {
		return nil
	}
	if !resolvesToLoopback4(host) {
		return nil
	}
	count := (n + perSource - 1) / perSource
	addrs := make([]netip.Addr, 0, count)
	a := netip.AddrFrom4([4]byte{127, 0, 0, 2})
	for range count {
		addrs = append(addrs, a)
		a = a.Next()
	}
	return addrs
}

// resolvesToLoopback4 reports whether host is, or resolves to, an IPv4 loopback
// address, which is what the client dials when given a source in 127.0.0.0/8.
func resolvesToLoopback4(host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().Is4() && ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip.To4() != nil && ip.IsLoopback() {
			return true
		}
	}
	return false
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
