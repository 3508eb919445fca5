package gateway

import (
	"context"
	"sync"

	"github.com/heraldgg/herald/internal/router"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// Router is what the gateway needs of the router; *router.Router is one. Every
// method is called from goroutines the gateway starts, never from the event
// loop or a shard worker, because each may wait for a game service.
type Router interface {
	Request(ctx context.Context, req router.Request) ([]byte, error)
	Notify(ctx context.Context, req router.Request) error
	SessionEvent(ctx context.Context, ev router.SessionEvent) error
	WantsSessionEvents() bool
}

// Option configures a Gateway beyond its Config.
type Option func(*Gateway)

// WithRouter sends client requests (req) to game services through r. Without
// it every req is answered "not found".
func WithRouter(r Router) Option { return func(g *Gateway) { g.router = r } }

// Session events are sent by a few workers from a bounded queue: a node that
// drains disconnects every session at once, and one goroutine (and gRPC call
// in flight) per session would turn that into a storm. Events are best effort
// by contract (backend.proto), so a full queue drops them and counts it.
const (
	eventWorkers = 4
	eventQueue   = 8192
)

// events is the session event queue and its workers.
type events struct {
	r    Router
	ch   chan router.SessionEvent
	ctx  context.Context // cancelled by stop: calls in flight end at once
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func startEvents(r Router) *events {
	e := &events{r: r, ch: make(chan router.SessionEvent, eventQueue)}
	e.ctx, e.stop = context.WithCancel(context.Background())
	for range eventWorkers {
		e.wg.Go(e.run)
	}
	return e
}

func (e *events) run() {
	for {
		select {
		case <-e.ctx.Done():
			return
		case ev := <-e.ch:
			// Failures are the router's to log and count; the event is not retried.
			_ = e.r.SessionEvent(e.ctx, ev)
		}
	}
}

// sessionEvent queues ev for the services that asked for session events,
// without waiting.
func (g *Gateway) sessionEvent(ev router.SessionEvent) {
	if g.events == nil {
		return
	}
	select {
	case g.events.ch <- ev:
	default:
		if g.eventsDropped.Add(1)&(1<<10-1) == 1 {
			g.log.Warn("gateway: session event queue full; dropping events", "dropped", g.eventsDropped.Load())
		}
	}
}

// Close stops the session event workers (events still queued are dropped) and
// the idle request workers, and waits for server subscribes in progress. The
// server calls it once no client connection is left.
func (g *Gateway) Close() {
	g.work.stop()
	if g.events != nil {
		g.events.stop()
		g.events.wg.Wait()
	}
	g.bg.Wait()
}

func closeReason(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// request sends a req to its game service on a worker goroutine, so that
// neither the event loop nor the session's shard waits for a service, and
// answers through the session's shard exactly once: the router returns once,
// within the route's timeout. A req without an id is a notify: nothing is
// answered, whatever happens.
func (g *Gateway) request(cl *client, s *session.Session, env *protocol.Envelope) {
	if g.router == nil {
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeNotFound, "no route %q on this node", env.Route))
		return
	}
	if env.Route == "" {
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeBadRequest, "route is required"))
		return
	}
	if int(cl.requests.Add(1)) > g.cfg.MaxRequests {
		cl.requests.Add(-1)
		g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeLimitExceeded,
			"more than %d requests waiting for an answer", g.cfg.MaxRequests))
		return
	}
	// env was decoded for this frame alone: its data and metadata are not
	// reused by the transport, so the goroutine may keep them.
	req := router.Request{Route: env.Route, Session: s.ID, User: s.User, Meta: env.Meta, Data: env.Data}
	id := env.Id
	g.work.do(func() {
		defer cl.requests.Add(-1)
		if id == 0 {
			if err := g.router.Notify(context.Background(), req); err != nil {
				g.log.Debug("gateway: notify failed", "route", req.Route, "session", s.ID, "err", err)
			}
			return
		}
		data, err := g.router.Request(context.Background(), req)
		if err != nil {
			g.replyErr(cl, s, s.Codec, id, err)
			return
		}
		g.reply(cl, s, s.Codec, &protocol.Envelope{Op: protocol.Op_OP_REPLY, Id: id, Data: data})
	})
}
