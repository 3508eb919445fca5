package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"time"

	"github.com/heraldgg/herald/protocol"
)

// Defaults for the zero values of Config.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxFrameSize   = 64 << 10
	DefaultReadBufferSize = 4 << 10
	DefaultMaxRetries     = 5
	DefaultBackoffMin     = 100 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
)

// Config describes one client. The zero value of every field means its documented
// default; only URL is required. Handlers are called on the client's reader goroutine
// in arrival order (see the package documentation): they must not block for long.
type Config struct {
	// URL of the Herald node: ws://host:7000/ws, wss://host/ws or tcp://host:7001.
	// Required.
	URL string
	// URLs are further nodes of the same cluster (any of the three schemes), for
	// when the node at URL is gone. Dial tries URL, then each of URLs in turn; a
	// redial after a drop starts with the address after the one that dropped and
	// moves on to the next one at every failed attempt, wrapping around, so a
	// client whose node was killed comes back on another node within as many
	// attempts as there are addresses. List them in a different order for
	// different clients (a rotation, or shuffled) to spread the clients of a lost
	// node over the others. Resuming a subscription on another node is exact only
	// when the nodes share a Redis or NATS broker. Default nil: URL only.
	URLs []string
	// Codec of every frame the client sends; the server answers in the same one.
	// Default protocol.CodecJSON.
	Codec protocol.Codec
	// User is sent in connect for servers in anonymous mode. Default "" (none).
	User string
	// Token is the credential sent in connect. Default "" (none).
	Token string
	// TLS configures wss:// connections. Default nil: the system roots, and the
	// URL's host as server name.
	TLS *tls.Config
	// LocalAddr is the source IP to bind, so that one load generator can spread its
	// connections over 127.0.0.2, 127.0.0.3… past the ephemeral ports of one address.
	// Default: the zero netip.Addr, letting the OS choose.
	LocalAddr netip.Addr

	// DialTimeout bounds connecting and the connect handshake, for Dial and for each
	// reconnection attempt. Default 5 s.
	DialTimeout time.Duration
	// RequestTimeout bounds a call (Subscribe, Publish, Request, …) whose context has
	// no deadline. Default 10 s.
	RequestTimeout time.Duration
	// MaxFrameSize is the largest frame accepted from the server, in bytes. A larger
	// one ends the client (OnFail, with an error wrapping protocol.ErrFrameTooLarge)
	// rather than only the connection: a topic message would come back with the
	// history replayed after the reconnect, and again, without end. Default 64 KiB.
	MaxFrameSize int
	// ReadBufferSize is the buffer each connection reads the socket into. A
	// larger one takes a burst of small frames in fewer system calls, at that
	// many bytes per connection. Default 4 KiB.
	ReadBufferSize int
	// BorrowData makes Message.Data of Protobuf messages point into the
	// connection's read buffer instead of a copy of its own, so that it is valid
	// only until the handler returns: copy what you keep. It saves an allocation
	// per message for clients that receive millions (a load generator). JSON
	// messages are copied regardless. Default false.
	BorrowData bool

	// MaxRetries is how many redials in a row may fail before the client gives up
	// (OnFail, then Done). Default 5. A negative value turns reconnecting off: the
	// first drop ends the client (0 means the default, never "off").
	MaxRetries int
	// BackoffMin is the base of the exponential backoff between redials; the n-th
	// attempt waits a random time in [0, min(BackoffMax, BackoffMin·2ⁿ)) ("full
	// jitter", so that thousands of clients dropped together do not come back in
	// step). Default 100 ms.
	BackoffMin time.Duration
	// BackoffMax caps the backoff. Default 5 s.
	BackoffMax time.Duration

	// Logger receives the client's diagnostics. Default: discarded.
	Logger *slog.Logger

	// OnMessage receives msg frames that belong to no subscription of this client:
	// broadcast, push and region messages, and topic messages of subscriptions a
	// game service made for this session on the server (they are not renewed by
	// the client after a reconnect; the game does that). Default nil: dropped.
	// Message.Data is the handler's to keep.
	OnMessage func(Message)
	// OnEvent receives enter, leave and moved events (positions of the sessions
	// this one sees, on maps with interest). Default nil: dropped.
	OnEvent func(Event)
	// OnDisconnect is called when a connection drops for any reason but Close, before
	// any reconnection attempt. err wraps ErrDisconnected and the cause: a
	// *protocol.Error for a disconnect frame or a WebSocket close code 3000–3999,
	// ErrHeartbeatTimeout, or the network error. Default nil.
	OnDisconnect func(err error)
	// OnReconnect is called once a new connection is up and every subscription has
	// been answered (resubscribed, reported to its OnError, or refused for a
	// passing reason and being asked again; see OnError). Default nil.
	OnReconnect func()
	// OnFail is called once when the client stops for good without Close: a terminal
	// disconnect, a frame over MaxFrameSize, reconnecting turned off, or MaxRetries
	// failed redials. Done is
	// closed right after and Err returns the same error. Default nil.
	OnFail func(err error)
}

// settings is a Config with its defaults filled in and its URLs parsed.
type settings struct {
	Config
	targets []target // URL, then URLs
}

// target is one node's address.
type target struct {
	url  string
	tcp  bool   // tcp:// rather than ws:// or wss://
	addr string // host:port, for tcp://
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("client: bad URL: %w", err)
	}
	tg := target{url: raw}
	switch u.Scheme {
	case "ws", "wss":
	case "tcp":
		if u.Port() == "" {
			return tg, fmt.Errorf("client: URL %q has no port", raw)
		}
		tg.tcp, tg.addr = true, u.Host
	default:
		return tg, fmt.Errorf("client: URL %q: scheme must be ws, wss or tcp", raw)
	}
	return tg, nil
}

func (cfg Config) settings() (settings, error) {
	s := settings{Config: cfg}
	for _, raw := range append([]string{cfg.URL}, cfg.URLs...) {
		tg, err := parseTarget(raw)
		if err != nil {
			return s, err
		}
		s.targets = append(s.targets, tg)
	}
	if cfg.Codec != protocol.CodecJSON && cfg.Codec != protocol.CodecProto {
		return s, fmt.Errorf("client: unknown codec %d", cfg.Codec)
	}
	if cfg.DialTimeout < 0 || cfg.RequestTimeout < 0 || cfg.MaxFrameSize < 0 || cfg.ReadBufferSize < 0 ||
		cfg.BackoffMin < 0 || cfg.BackoffMax < 0 {
		return s, errors.New("client: timeouts, sizes and backoffs must not be negative")
	}
	s.DialTimeout = orDefault(s.DialTimeout, DefaultDialTimeout)
	s.RequestTimeout = orDefault(s.RequestTimeout, DefaultRequestTimeout)
	s.MaxFrameSize = orDefault(s.MaxFrameSize, DefaultMaxFrameSize)
	s.ReadBufferSize = orDefault(s.ReadBufferSize, DefaultReadBufferSize)
	s.MaxRetries = orDefault(s.MaxRetries, DefaultMaxRetries)
	s.BackoffMin = orDefault(s.BackoffMin, DefaultBackoffMin)
	s.BackoffMax = orDefault(s.BackoffMax, max(DefaultBackoffMax, s.BackoffMin))
	if s.BackoffMax < s.BackoffMin {
		return s, fmt.Errorf("client: BackoffMax %v is below BackoffMin %v", s.BackoffMax, s.BackoffMin)
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// backoff returns how long to wait before redial number attempt (0-based).
func (s *settings) backoff(attempt int) time.Duration {
	ceil := s.BackoffMin
	for i := 0; i < attempt && ceil < s.BackoffMax; i++ {
		ceil *= 2
	}
	return rand.N(min(ceil, s.BackoffMax))
}
