package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/heraldgg/herald/protocol"
)

// WebSocketServer serves the client port: WebSocket upgrades on Path, everything
// else to the HTTP handler given to NewWebSocket (the demo page).
type WebSocketServer struct {
	server
	addr   string
	path   string
	http   http.Handler
	engine *nbhttp.Engine
	up     *websocket.Upgrader

	// handshakes holds, per connection not yet upgraded, the timer that closes it
	// when HandshakeTimeout passes (*nbio.Conn → *time.Timer).
	handshakes sync.Map
}

// NewWebSocket prepares a WebSocket listener on addr; it does no I/O until Start.
// Requests to other paths than path go to page, which may be nil.
func NewWebSocket(cfg Config, addr, path string, h Handler, page http.Handler, log *slog.Logger) *WebSocketServer {
	cfg = cfg.WithDefaults()
	if page == nil {
		page = http.NotFoundHandler()
	}
	return &WebSocketServer{
		server: server{cfg: cfg, handler: h, log: log},
		addr:   addr,
		path:   path,
		http:   page,
	}
}

// Start binds the address and starts the event loops.
func (s *WebSocketServer) Start() error {
	if s.engine != nil {
		return ErrStarted
	}
	listen, _, err := s.listen(s.addr)
	if err != nil {
		return err
	}
	up := websocket.NewUpgrader()
	// Herald runs its own heartbeat deadline; nbio's per-connection read timer would
	// cost a timer per idle player.
	up.KeepaliveTime = 0
	up.MessageLengthLimit = s.cfg.MaxFrameSize
	up.SetPingHandler(func(wsc *websocket.Conn, data string) {
		if c, ok := wsc.Session().(*Conn); ok {
			c.writePong([]byte(data))
			s.safely(c, func() { s.handler.Frame(c, false, nil) })
		}
	})
	up.SetPongHandler(func(wsc *websocket.Conn, _ string) {
		if c, ok := wsc.Session().(*Conn); ok {
			s.safely(c, func() { s.handler.Frame(c, false, nil) })
		}
	})
	up.SetCloseHandler(func(wsc *websocket.Conn, code int, _ string) {
		if c, ok := wsc.Session().(*Conn); ok {
			// Echo the client's code, as RFC 6455 asks; a close without one gets 1000.
			if code < 1000 || code > 4999 {
				code = 1000
			}
			c.Close(protocol.Code(code), "", 0)
		}
	})
	up.CheckOrigin = s.checkOrigin
	up.OnMessage(func(wsc *websocket.Conn, mt websocket.MessageType, data []byte) {
		if c, ok := wsc.Session().(*Conn); ok {
			s.safely(c, func() { s.handler.Frame(c, mt == websocket.TextMessage, data) })
		}
	})
	up.OnClose(func(wsc *websocket.Conn, err error) {
		if c, ok := wsc.Session().(*Conn); ok {
			s.closed(c, err)
		}
	})
	s.up = up

	mux := http.NewServeMux()
	mux.Handle(s.path, http.HandlerFunc(s.upgrade))
	mux.Handle("/", s.http)
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:        "tcp",
		Addrs:          []string{s.addr},
		Listen:         listen,
		NPoller:        s.cfg.Pollers,
		ReadBufferSize: s.cfg.ReadBufferSize,
		ReadLimit:      s.cfg.MaxFrameSize + 1024,
		// nbhttp arms its read deadline from its accept goroutine after handing the
		// connection to an event loop, which can be after the upgrade already
		// happened there; the deadline would then cut a healthy WebSocket. So its
		// deadline is made harmless and Herald times handshakes itself (OnOpen).
		KeepaliveTime:           neverTimeout,
		ReleaseWebsocketPayload: true,
		Handler:                 mux,
	})
	// Text frames are checked for UTF-8 by the gateway, which answers with Herald's
	// own close code rather than the library's generic protocol error.
	engine.CheckUtf8 = func([]byte) bool { return true }
	release := raceHandoff(engine)
	engine.OnOpen(func(c net.Conn) {
		release()
		nb, ok := c.(*nbio.Conn)
		if !ok {
			return
		}
		s.handshakes.Store(nb, time.AfterFunc(s.cfg.HandshakeTimeout, func() {
			if _, pending := s.handshakes.LoadAndDelete(nb); pending {
				_ = nb.Close()
			}
		}))
	})
	engine.OnClose(func(c net.Conn, _ error) {
		if t, ok := s.handshakes.LoadAndDelete(c); ok {
			t.(*time.Timer).Stop()
		}
	})
	engine.OnWrittenSize(func(nc *nbio.Conn, _ []byte, n int) {
		if wsc, ok := nc.Session().(*websocket.Conn); ok {
			if c, ok := wsc.Session().(*Conn); ok {
				c.written(n)
			}
		}
	})
	up.Engine = engine
	s.engine = engine
	if err := engine.Start(); err != nil {
		return err
	}
	return nil
}

func (s *WebSocketServer) upgrade(w http.ResponseWriter, r *http.Request) {
	wsc, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		s.log.Debug("transport: websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	under := wsc.UnderlayerConn()
	// nbhttp wraps the event-loop connection in its own type while it parses HTTP.
	if hc, isHTTP := under.(*nbhttp.Conn); isHTTP {
		under = hc.Conn
	}
	nb, ok := under.(*nbio.Conn)
	if ok {
		if t, pending := s.handshakes.LoadAndDelete(nb); pending {
			t.(*time.Timer).Stop()
		}
	}
	if !ok {
		s.log.Error("transport: websocket connection is not on an event loop", "remote", r.RemoteAddr)
		_ = wsc.Close()
		return
	}
	c := &Conn{kind: WebSocket, nb: nb, ws: wsc, remote: nb.RemoteAddr(), server: &s.server}
	wsc.SetSession(c)
	s.safely(c, func() { s.handler.Open(c) })
}

// Shutdown closes every connection and stops the event loops.
func (s *WebSocketServer) Shutdown(ctx context.Context) error {
	if s.engine == nil {
		return nil
	}
	s.stopLingers()
	err := s.engine.Shutdown(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// neverTimeout disables nbhttp's own HTTP read deadline; see Start.
const neverTimeout = 100 * 365 * 24 * time.Hour

func (s *WebSocketServer) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, allowed := range s.cfg.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(allowed, origin) {
			return true
		}
	}
	s.log.Info("transport: websocket origin refused", "origin", origin, "remote", r.RemoteAddr)
	return false
}
