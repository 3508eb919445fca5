package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/lesismal/nbio"

	"github.com/heraldgg/herald/protocol"
)

// TCPServer serves raw TCP clients: length-prefixed frames (see protocol.AppendTCPFrame).
type TCPServer struct {
	server
	addr   string
	engine *nbio.Engine
}

// NewTCP prepares a raw-TCP listener on addr; it does no I/O until Start.
func NewTCP(cfg Config, addr string, h Handler, log *slog.Logger) *TCPServer {
	return &TCPServer{server: server{cfg: cfg.WithDefaults(), handler: h, log: log}, addr: addr}
}

// Start binds the address and starts the event loops.
func (s *TCPServer) Start() error {
	if s.engine != nil {
		return ErrStarted
	}
	listen, _, err := s.listen(s.addr)
	if err != nil {
		return err
	}
	engine := nbio.NewEngine(nbio.Config{
		Network:        "tcp",
		Addrs:          []string{s.addr},
		Listen:         listen,
		NPoller:        s.cfg.Pollers,
		ReadBufferSize: s.cfg.ReadBufferSize,
	})
	engine.OnOpen(func(nb *nbio.Conn) {
		c := &Conn{kind: TCP, nb: nb, remote: nb.RemoteAddr(), server: &s.server,
			tcpIn: protocol.NewTCPReader(s.cfg.MaxFrameSize)}
		nb.SetSession(c)
		nb.Execute(func() { s.safely(c, func() { s.handler.Open(c) }) })
	})
	engine.OnData(func(nb *nbio.Conn, data []byte) {
		c, ok := nb.Session().(*Conn)
		if !ok {
			return
		}
		// Framing runs on the event loop over the shared read buffer; only complete
		// frames are copied, to hand them to the connection's job list.
		err := c.tcpIn.Feed(data, func(frame []byte) error {
			payload := append([]byte(nil), frame...)
			nb.Execute(func() { s.safely(c, func() { s.handler.Frame(c, false, payload) }) })
			return nil
		})
		if err != nil {
			nb.Execute(func() { s.safely(c, func() { s.handler.Broken(c, err) }) })
		}
	})
	engine.OnClose(func(nb *nbio.Conn, err error) {
		if c, ok := nb.Session().(*Conn); ok {
			nb.MustExecute(func() { s.closed(c, err) })
		}
	})
	engine.OnWrittenSize(func(nb *nbio.Conn, _ []byte, n int) {
		if c, ok := nb.Session().(*Conn); ok {
			c.written(n)
		}
	})
	s.engine = engine
	return engine.Start()
}

// Shutdown closes every connection and stops the event loops.
func (s *TCPServer) Shutdown(ctx context.Context) error {
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
