package router

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/protocol"
)

// grpcTransport calls one instance's GameService over one multiplexed
// connection. grpc.NewClient does no I/O; the connection is made by watch.
type grpcTransport struct {
	conn   *grpc.ClientConn
	client protocol.GameServiceClient

	// down is set when the connection fails and cleared when it is ready
	// again, by watch. While set, calls fail fast without reaching the
	// instance, so the router moves them elsewhere instead.
	down atomic.Bool
}

// Fixed flow-control windows turn off gRPC's bandwidth estimator, which
// otherwise sends a PING (and a window update) each time data arrives with no
// ping outstanding. With requests one at a time that was a ping and its ack
// per call on top of the call itself: 6 writes and 11 reads per routed echo
// instead of 4 and 7, and half the latency Herald added at one client
// (docs/benchmarks.md, routed requests). The windows are what the estimator
// would grow to for a fast link; replies are at most a frame of a few KiB.
const (
	windowSize     = 1 << 20
	connWindowSize = 16 << 20
)

func newGRPCTransport(addr string, opts []grpc.DialOption) (*grpcTransport, error) {
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(connWindowSize),
	}, opts...)
	conn, err := grpc.NewClient(addr, all...)
	if err != nil {
		return nil, err
	}
	return &grpcTransport{conn: conn, client: protocol.NewGameServiceClient(conn)}, nil
}

// watch keeps the connection up and down current until ctx is done or the
// connection is closed. gRPC lets an idle connection lie until a call needs
// it; connecting again at once means a dead instance shows as down (and a
// recovered one as up) without a player's request finding out first.
func (t *grpcTransport) watch(ctx context.Context) {
	for {
		s := t.conn.GetState()
		switch s {
		case connectivity.Ready:
			t.down.Store(false)
		case connectivity.TransientFailure:
			t.down.Store(true)
		case connectivity.Idle:
			t.conn.Connect()
		case connectivity.Shutdown:
			return
		}
		if !t.conn.WaitForStateChange(ctx, s) {
			return
		}
	}
}

func (t *grpcTransport) reachable() bool { return !t.down.Load() }

func (t *grpcTransport) close() { _ = t.conn.Close() }

func (t *grpcTransport) invoke(ctx context.Context, c *call) ([]byte, error) {
	// gRPC fills the peer only for a call that got a stream on a connection,
	// so an empty peer after a failure means the call never left Herald: it
	// failed waiting for a connection that did not come. That is safe to send
	// elsewhere even for a route that is not idempotent, and it is the usual
	// fate of calls made in the moment between an instance dying and its
	// connection being marked down.
	c.peer = peer.Peer{}
	p := &c.peer
	var err error
	switch c.op {
	case opNotify:
		_, err = t.client.Notify(ctx, &protocol.NotifyMsg{
			Route: c.req.Route, Session: c.req.Session, User: c.req.User, Meta: c.req.Meta, Data: c.req.Data,
		}, grpc.Peer(p))
	case opEvent:
		_, err = t.client.SessionEvent(ctx, &protocol.SessionEventMsg{
			Type: c.ev.Type, Session: c.ev.Session, User: c.ev.User, Node: c.node,
			Code: uint32(c.ev.Code), Reason: c.ev.Reason,
		}, grpc.Peer(p))
	default:
		var reply *protocol.ReplyMsg
		reply, err = t.client.Request(ctx, &protocol.RequestMsg{
			Route: c.req.Route, Session: c.req.Session, User: c.req.User, Meta: c.req.Meta, Data: c.req.Data,
		}, grpc.Peer(p))
		if err == nil {
			if reply.Code != 0 {
				// A deliberate answer: the instance is healthy.
				return nil, newError(ErrService, serviceCode(reply.Code), c.service, truncate(reply.Reason), nil)
			}
			return reply.Data, nil
		}
	}
	if err != nil {
		e := grpcError(ctx, c.service, err)
		e.unsent = p.Addr == nil
		return nil, e
	}
	return nil, nil
}

// grpcError maps a failed call's status to what the client sees and how the
// breaker and retries treat it. Statuses that mean the instance could not do
// its job count against it and may go to another instance; statuses a handler
// returns on purpose (invalid argument, not found, ...) are answers.
func grpcError(ctx context.Context, service string, err error) *Error {
	st := status.Convert(err)
	code := st.Code()
	var e *Error
	switch code {
	case codes.DeadlineExceeded:
		e = newError(ErrTimeout, protocol.CodeTimeout, service, service+": no reply in time", err)
		e.outcome = breaker.Failure
	case codes.Canceled:
		if ctx.Err() != nil {
			e = newError(ErrCanceled, protocol.CodeUnavailable, service, service+": request canceled", err)
			e.outcome = breaker.Ignore
			break
		}
		e = newError(ErrUnavailable, protocol.CodeUnavailable, service, service+": the service dropped the call", err)
		e.outcome, e.retryable = breaker.Failure, true
	case codes.Unavailable:
		e = newError(ErrUnavailable, protocol.CodeUnavailable, service, service+": service unavailable", err)
		e.outcome, e.retryable = breaker.Failure, true
	case codes.ResourceExhausted:
		e = newError(ErrOverloaded, protocol.CodeOverloaded, service, service+": service overloaded", err)
		e.outcome, e.retryable = breaker.Failure, true
	case codes.Unimplemented:
		e = newError(ErrUnavailable, protocol.CodeUnavailable, service, service+": instance does not serve this call", err)
		e.outcome, e.retryable = breaker.Failure, true
	case codes.Internal, codes.Unknown, codes.DataLoss:
		// Includes replies that do not decode: the handler's message stays in
		// the log, not in the player's frame.
		e = newError(ErrService, protocol.CodeServiceError, service, service+": service failed ("+code.String()+")", err)
		e.outcome, e.retryable = breaker.Failure, true
	case codes.InvalidArgument, codes.OutOfRange:
		e = newError(ErrService, protocol.CodeBadRequest, service, truncate(st.Message()), err)
	case codes.NotFound:
		e = newError(ErrService, protocol.CodeNotFound, service, truncate(st.Message()), err)
	case codes.PermissionDenied, codes.Unauthenticated:
		e = newError(ErrService, protocol.CodePermissionDenied, service, truncate(st.Message()), err)
	default:
		e = newError(ErrService, protocol.CodeServiceError, service, truncate(st.Message()), err)
	}
	return e
}
