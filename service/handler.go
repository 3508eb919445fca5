package service

import (
	"context"
	"errors"
	"runtime/debug"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/protocol"
)

// gameServer is the GameService Herald calls; it hands each call to the
// service's handlers.
type gameServer struct {
	protocol.UnimplementedGameServiceServer
	s *Service
}

func (g *gameServer) Request(ctx context.Context, m *protocol.RequestMsg) (*protocol.ReplyMsg, error) {
	req := &Request{Route: m.Route, Session: m.Session, User: m.User, Meta: m.Meta, Data: m.Data}
	data, err := g.s.call(ctx, req)
	if err == nil {
		return &protocol.ReplyMsg{Data: data}, nil
	}
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return &protocol.ReplyMsg{Code: uint32(perr.Code), Reason: perr.Reason}, nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return nil, st.Err()
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Herald has given up on the call already; say so in gRPC's terms.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	g.s.log.Warn("service: handler failed", "route", m.Route, "session", m.Session, "err", err)
	return &protocol.ReplyMsg{Code: uint32(protocol.CodeServiceError), Reason: "service error"}, nil
}

func (g *gameServer) Notify(ctx context.Context, m *protocol.NotifyMsg) (*protocol.NotifyReply, error) {
	req := &Request{Route: m.Route, Session: m.Session, User: m.User, Meta: m.Meta, Data: m.Data, Notify: true}
	if _, err := g.s.call(ctx, req); err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return nil, st.Err()
		}
		g.s.log.Info("service: notify handler failed", "route", m.Route, "session", m.Session, "err", err)
	}
	return &protocol.NotifyReply{}, nil
}

func (g *gameServer) SessionEvent(ctx context.Context, m *protocol.SessionEventMsg) (*protocol.SessionEventReply, error) {
	if fn := g.s.onEvent; fn != nil {
		err := protect(func() error {
			fn(ctx, SessionEvent{Type: m.Type, Session: m.Session, User: m.User, Node: m.Node,
				Code: protocol.Code(m.Code), Reason: m.Reason})
			return nil
		})
		if err != nil {
			g.s.log.Error("service: session event handler panicked", "err", err)
			return nil, err
		}
	}
	return &protocol.SessionEventReply{}, nil
}

// call runs the handler for req's method. A method without a handler is
// answered "not found", which is an answer, not a failure of the instance.
func (s *Service) call(ctx context.Context, req *Request) (data []byte, err error) {
	_, req.Method, _ = strings.Cut(req.Route, ".")
	fn := s.handlers[req.Method]
	if fn == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "%s has no method %q", s.cfg.Name, req.Method)
	}
	err = protect(func() error {
		data, err = fn(ctx, req)
		return err
	})
	return data, err
}

// protect runs fn, turning a panic into an Internal status: one bad request
// must not take down the instance, and Herald counts it against the instance's
// breaker so that a handler panicking on every call opens the circuit.
func protect(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.Errorf(codes.Internal, "handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return fn()
}
