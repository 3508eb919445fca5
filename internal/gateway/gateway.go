package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
)

// Broker is what the gateway needs of the broker.
type Broker interface {
	Publish(ctx context.Context, topic string, data []byte, opts broker.PublishOptions) (broker.Position, error)
	History(ctx context.Context, topic string, req broker.HistoryRequest) (broker.HistoryResult, error)
}

// Gateway handles client connections.
type Gateway struct {
	// Immutable after New.
	cfg     Config
	sessCfg session.Config
	node    string
	hub     *hub.Hub
	broker  Broker
	log     *slog.Logger
	router  Router  // nil: no routes
	events  *events // nil: no service wants session events
	work    *workers

	bg sync.WaitGroup // server subscribes in progress

	nextNum  atomic.Uint64
	draining atomic.Bool
	conns    atomic.Int64 // open connections, connected or not

	ipMu  sync.Mutex
	perIP map[string]int // Guarded by ipMu.

	// Counters for stats and metrics.
	framesIn      atomic.Uint64
	badFrames     atomic.Uint64
	published     atomic.Uint64
	eventsDropped atomic.Uint64
}

// New builds a gateway for the node named node. With a router that wants
// session events it starts their workers; Close stops them.
func New(cfg Config, sessCfg session.Config, node string, h *hub.Hub, b Broker, log *slog.Logger, opts ...Option) *Gateway {
	g := &Gateway{cfg: cfg.WithDefaults(), sessCfg: sessCfg.WithDefaults(), node: node, hub: h,
		broker: b, log: log, perIP: make(map[string]int), work: newWorkers()}
	for _, o := range opts {
		o(g)
	}
	if g.router != nil && g.router.WantsSessionEvents() {
		g.events = startEvents(g.router)
	}
	return g
}

var _ transport.Handler = (*Gateway)(nil)

// client is one connection's state.
type client struct {
	conn    *transport.Conn
	ip      string
	limiter *rate.Limiter
	// requests counts reqs waiting for a game service; their goroutines
	// decrement it.
	requests atomic.Int32

	mu      sync.Mutex // guards sess and the connect deadline against the timer
	sess    *session.Session
	timer   *time.Timer
	expired bool

	// Set on the first TCP frame.
	codec      protocol.Codec
	codecKnown bool
}

// Drain makes the gateway refuse new connections (they get a shutdown disconnect).
func (g *Gateway) Drain() { g.draining.Store(true) }

// Open starts the connect deadline.
func (g *Gateway) Open(c *transport.Conn) {
	cl := &client{conn: c, ip: ipOf(c.RemoteAddr()),
		limiter: rate.NewLimiter(rate.Limit(g.cfg.MessageRate), g.cfg.MessageBurst)}
	c.SetState(cl)
	g.conns.Add(1)
	if !g.admitIP(cl.ip) {
		cl.ip = "" // not counted
		g.refuse(c, protocol.CodecJSON, protocol.DisconnectTooManyConns, "too many connections from this address")
		return
	}
	if g.draining.Load() {
		g.refuse(c, protocol.CodecJSON, protocol.DisconnectShutdown, "node is shutting down")
		return
	}
	if int(g.conns.Load()) > g.cfg.MaxConnections {
		g.refuse(c, protocol.CodecJSON, protocol.DisconnectTooManyConns, "node is full")
		return
	}
	cl.timer = time.AfterFunc(g.cfg.ConnectTimeout, func() {
		cl.mu.Lock()
		if cl.sess != nil {
			cl.mu.Unlock()
			return
		}
		cl.expired = true
		cl.mu.Unlock()
		g.log.Info("gateway: no connect frame in time", "remote", c.RemoteAddr(), "timeout", g.cfg.ConnectTimeout)
		g.refuse(c, cl.replyCodec(protocol.CodecJSON), protocol.DisconnectConnectTimeout, "")
	})
}

func (g *Gateway) admitIP(ip string) bool {
	g.ipMu.Lock()
	defer g.ipMu.Unlock()
	if g.perIP[ip] >= g.cfg.MaxConnectionsPerIP {
		return false
	}
	g.perIP[ip]++
	return true
}

func (g *Gateway) releaseIP(ip string) {
	if ip == "" {
		return
	}
	g.ipMu.Lock()
	if g.perIP[ip]--; g.perIP[ip] <= 0 {
		delete(g.perIP, ip)
	}
	g.ipMu.Unlock()
}

func (cl *client) replyCodec(fallback protocol.Codec) protocol.Codec {
	if cl.codecKnown {
		return cl.codec
	}
	return fallback
}

// refuse sends a disconnect to a connection without a session and closes it.
func (g *Gateway) refuse(c *transport.Conn, codec protocol.Codec, code protocol.Code, reason string) {
	f := hub.DisconnectFrame(code, reason)
	_ = c.Write(f.Wire(session.Variant(c.Kind(), codec)))
	c.Close(code, f.Env.Reason, g.sessCfg.WriteTimeout)
}

// Closed forgets the connection.
func (g *Gateway) Closed(c *transport.Conn, err error) {
	g.conns.Add(-1)
	cl, ok := c.State().(*client)
	if !ok {
		return
	}
	g.releaseIP(cl.ip)
	cl.mu.Lock()
	if cl.timer != nil {
		cl.timer.Stop()
	}
	s := cl.sess
	cl.mu.Unlock()
	if s != nil {
		s.MarkClosed()
		g.hub.Remove(s)
		g.sessionEvent(router.SessionEvent{Type: protocol.SessionEventType_SESSION_EVENT_DISCONNECTED,
			Session: s.ID, User: s.User, Reason: closeReason(err)})
	}
	if err != nil {
		g.log.Info("gateway: connection closed", "remote", c.RemoteAddr(), "err", err)
	}
}

// Broken answers a stream that cannot be framed any more.
func (g *Gateway) Broken(c *transport.Conn, err error) {
	cl, _ := c.State().(*client)
	g.badFrames.Add(1)
	g.log.Warn("gateway: closing connection with a bad frame", "remote", c.RemoteAddr(), "err", err)
	codec := protocol.CodecProto
	if cl != nil {
		codec = cl.replyCodec(codec)
	}
	if errors.Is(err, protocol.ErrFrameTooLarge) {
		g.closeClient(cl, c, codec, protocol.DisconnectFrameTooLarge, err.Error())
		return
	}
	g.closeClient(cl, c, codec, protocol.DisconnectBadRequest, err.Error())
}

func (g *Gateway) closeClient(cl *client, c *transport.Conn, codec protocol.Codec, code protocol.Code, reason string) {
	if cl != nil {
		cl.mu.Lock()
		s := cl.sess
		cl.mu.Unlock()
		if s != nil {
			g.hub.Disconnect(s, code, reason)
			return
		}
	}
	g.refuse(c, codec, code, reason)
}

// Frame handles one client frame.
func (g *Gateway) Frame(c *transport.Conn, text bool, payload []byte) {
	cl, ok := c.State().(*client)
	if !ok {
		return
	}
	cl.mu.Lock()
	s, expired := cl.sess, cl.expired
	cl.mu.Unlock()
	if expired {
		return
	}
	now := time.Now()
	if s != nil {
		s.Touch(now)
	}
	if len(payload) == 0 {
		return // keep-alive
	}
	g.framesIn.Add(1)

	codec := protocol.CodecProto
	switch {
	case c.Kind() == transport.WebSocket && text:
		codec = protocol.CodecJSON
		if !utf8.Valid(payload) {
			g.badFrames.Add(1)
			g.log.Warn("gateway: text frame is not UTF-8", "remote", c.RemoteAddr())
			g.closeClient(cl, c, codec, protocol.DisconnectInvalidUTF8, "text frame is not valid UTF-8")
			return
		}
	case c.Kind() == transport.TCP:
		if !cl.codecKnown {
			cl.codec, cl.codecKnown = protocol.DetectCodec(payload), true
		}
		codec = cl.codec
	}

	env := envPool.Get().(*protocol.Envelope)
	defer envPool.Put(env)
	if err := codec.Decode(payload, env); err != nil {
		g.badFrames.Add(1)
		g.log.Info("gateway: bad frame", "remote", c.RemoteAddr(), "codec", codec, "err", err)
		g.replyErr(cl, s, codec, env.Id, err)
		return
	}
	if s == nil {
		g.handshake(cl, codec, env)
		return
	}
	if !cl.limiter.AllowN(now, 1) {
		g.replyErr(cl, s, codec, env.Id, protocol.Errorf(protocol.CodeRateLimited,
			"more than %g frames per second", g.cfg.MessageRate))
		return
	}
	g.dispatch(cl, s, env)
}

// envPool holds the envelopes client frames are decoded into. Nothing keeps an
// envelope past Frame (a request copies the fields it needs), and a decoded
// envelope escaped to the heap: one allocation per frame of the largest type
// on the request path. A pool rather than one per connection, which would cost
// every idle connection the envelope's size. Decode resets what it is given.
var envPool = sync.Pool{New: func() any { return new(protocol.Envelope) }}

// reply answers a request. A session's answers go through its shard so they keep
// their order with everything else it is sent; before connect they are written
// straight to the connection.
func (g *Gateway) reply(cl *client, s *session.Session, codec protocol.Codec, env *protocol.Envelope) {
	if s != nil {
		g.hub.Send(s, session.NewFrame(env))
		return
	}
	_ = cl.conn.Write(session.NewFrame(env).Wire(session.Variant(cl.conn.Kind(), codec)))
}

func (g *Gateway) replyErr(cl *client, s *session.Session, codec protocol.Codec, id uint64, err error) {
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		g.log.Error("gateway: request failed", "err", err)
		perr = &protocol.Error{Code: protocol.CodeInternal, Reason: "internal error"}
	}
	g.reply(cl, s, codec, &protocol.Envelope{Op: protocol.Op_OP_ERROR, Id: id, Code: uint32(perr.Code), Reason: perr.Reason})
}

func (g *Gateway) handshake(cl *client, codec protocol.Codec, env *protocol.Envelope) {
	if env.Op != protocol.Op_OP_CONNECT {
		g.replyErr(cl, nil, codec, env.Id, protocol.Errorf(protocol.CodeNotConnected, "the first frame must be connect, not %s", env.Op.Name()))
		return
	}
	if g.draining.Load() {
		g.refuse(cl.conn, codec, protocol.DisconnectShutdown, "node is shutting down")
		return
	}
	if g.cfg.Anonymous != "allow" {
		g.log.Info("gateway: connect refused, anonymous users are not allowed", "remote", cl.conn.RemoteAddr())
		g.refuse(cl.conn, codec, protocol.DisconnectUnauthorized, "anonymous connections are not allowed")
		return
	}
	if len(env.User) > 256 || !utf8.ValidString(env.User) {
		g.replyErr(cl, nil, codec, env.Id, protocol.Errorf(protocol.CodeBadRequest, "user id must be UTF-8, at most 256 bytes"))
		return
	}
	num := g.nextNum.Add(1)
	s := session.New(g.sessCfg, newSessionID(), num, env.User, codec, session.Variant(cl.conn.Kind(), codec), cl.conn)
	cl.mu.Lock()
	if cl.expired {
		cl.mu.Unlock()
		return
	}
	cl.sess = s
	if cl.timer != nil {
		cl.timer.Stop()
		cl.timer = nil // an idle player should not keep the connect deadline's timer alive
	}
	cl.mu.Unlock()
	cl.conn.OnDrained(func() {
		s.Drained(time.Now())
		g.hub.Flush(s)
	})
	g.hub.Add(s)
	// Through the shard, so that nothing the session receives can overtake it.
	g.hub.Send(s, session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_CONNECTED, Id: env.Id,
		Session: s.ID, Node: g.node, User: s.User, HeartbeatMs: uint32(g.cfg.HeartbeatInterval / time.Millisecond)}))
	g.sessionEvent(router.SessionEvent{Type: protocol.SessionEventType_SESSION_EVENT_CONNECTED, Session: s.ID, User: s.User})
	g.log.Debug("gateway: connected", "session", s.ID, "user", s.User, "remote", cl.conn.RemoteAddr(),
		"transport", cl.conn.Kind(), "codec", codec)
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ipOf(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// Stats are the gateway's counters.
type Stats struct {
	Connections uint64 // open connections, connected or not
	FramesIn    uint64
	BadFrames   uint64
	Published   uint64
	// EventsDropped counts session events not sent because their queue was full.
	EventsDropped uint64
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	return Stats{Connections: uint64(max(g.conns.Load(), 0)), FramesIn: g.framesIn.Load(),
		BadFrames: g.badFrames.Load(), Published: g.published.Load(), EventsDropped: g.eventsDropped.Load()}
}
