package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/router/balancer"
	"github.com/heraldgg/herald/protocol"
)

// Watcher is what the router needs of discovery: every discovery.Registry is
// one.
type Watcher interface {
	Watch(ctx context.Context, service string, fn func([]discovery.Instance)) error
}

// Request is one client request or notify.
type Request struct {
	// Route is "service.method", for example "room.join".
	Route string
	// Session and User identify the sender. User (or Session, when User is
	// empty) is the key of the hash balancer.
	Session string
	User    string
	// Meta is the request's metadata; read-only while the call runs.
	Meta map[string]string
	// Data is the payload; read-only while the call runs.
	Data []byte
}

// SessionEvent reports a session's connect or disconnect to the services that
// asked for events.
type SessionEvent struct {
	Type    protocol.SessionEventType
	Session string
	User    string
	// Code and Reason say why a session disconnected.
	Code   protocol.Code
	Reason string
}

// Hooks let the owner observe routing, typically to count it in metrics. Every
// field may be nil.
type Hooks struct {
	// BreakerStateChange is called on each transition of an instance's
	// breaker, after the router has logged it. It runs with that breaker's
	// lock held: it must return quickly and must not call the Router.
	BreakerStateChange func(service, instance string, from, to breaker.State)
	// RequestDone is called once per Request or Notify, on the caller's
	// goroutine, with the code the client gets (0 for success) and the time
	// the router took. service is "" for a route that names no configured
	// service.
	RequestDone func(service string, code protocol.Code, elapsed time.Duration)
}

// Option configures a Router beyond its Config.
type Option func(*Router)

// WithHooks sets the Router's hooks.
func WithHooks(h Hooks) Option { return func(r *Router) { r.hooks = h } }

// WithDialOptions adds gRPC dial options for every instance connection, for
// example TLS credentials or tracing. The default is plaintext with fixed
// flow-control windows (grpc.go); these options come after, so they may
// override either.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(r *Router) { r.dialOpts = append(r.dialOpts, opts...) }
}

// WithNode names this Herald node in the session events it sends.
func WithNode(name string) Option { return func(r *Router) { r.node = name } }

// Router sends requests to game service instances. See the package doc.
type Router struct {
	// Immutable after New.
	reg      Watcher
	log      *slog.Logger
	hooks    Hooks
	dialOpts []grpc.DialOption
	node     string
	services map[string]*service
	events   []*service // services that asked for session events, by name

	// Created by New, cancelled by Close (or when Start's ctx ends); the
	// watches and every instance's background work run under it.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// Guarded by mu.
	started   bool
	stopAfter func() bool // unhooks Start's ctx from cancel

	closed atomic.Bool
	wg     sync.WaitGroup // watch goroutines and connection watchers
}

// New returns a Router for cfg's services, watching reg for their instances
// once started. It does no I/O. cfg is completed with WithDefaults; New fails
// if it is invalid.
func New(cfg Config, reg Watcher, log *slog.Logger, opts ...Option) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{reg: reg, log: log, services: make(map[string]*service, len(cfg.Services))}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		o(r)
	}
	for name, sc := range cfg.Services {
		bal, err := balancer.New(sc.Balancer)
		if err != nil {
			return nil, fmt.Errorf("router: services.%s.%w", name, err)
		}
		s := &service{name: name, cfg: sc, bal: bal, r: r, sticky: sc.Balancer.Policy == balancer.Hash}
		r.services[name] = s
		if sc.SessionEvents {
			r.events = append(r.events, s)
		}
	}
	slices.SortFunc(r.events, func(a, b *service) int { return strings.Compare(a.name, b.name) })
	return r, nil
}

// Start begins watching discovery for every service, on goroutines that run
// until ctx is done or Close. It returns at once: until a service's first
// instance set arrives its requests are answered "unavailable" (see Ready).
func (r *Router) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return ErrClosed
	}
	if r.started {
		return errors.New("router: already started")
	}
	r.started = true
	r.stopAfter = context.AfterFunc(ctx, r.cancel)
	for _, s := range r.services {
		r.wg.Go(func() { s.watch(r.ctx) })
	}
	return nil
}

// Ready reports whether discovery has delivered an instance set (possibly
// empty) for every service, so that an "unavailable" answer is about the
// service rather than about a router still starting.
func (r *Router) Ready() bool {
	for _, s := range r.services {
		if !s.ready.Load() {
			return false
		}
	}
	return true
}

// Close stops watching discovery and waits for the watches to end, then lets
// go of every instance: connections close as soon as the calls in flight on
// them finish (each within its route's timeout). Calls made after Close fail
// with ErrClosed. Close is idempotent.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Swap(true) {
		return nil
	}
	if r.stopAfter != nil {
		r.stopAfter()
	}
	r.cancel()
	r.wg.Wait()
	for _, s := range r.services {
		s.retireAll()
	}
	return nil
}

// Request sends req to an instance of its service and returns the reply data.
// It returns exactly once, with the data or an *Error (errors.As gives a
// *protocol.Error with the code for the client), within the route's timeout.
// It never blocks waiting for capacity: with every instance busy or down it
// fails at once. Safe for concurrent use.
func (r *Router) Request(ctx context.Context, req Request) ([]byte, error) {
	return r.route(ctx, opRequest, &req)
}

// Notify sends req to an instance of its service, which returns no data. Like
// Request it returns once, with nil when the instance accepted the message.
func (r *Router) Notify(ctx context.Context, req Request) error {
	_, err := r.route(ctx, opNotify, &req)
	return err
}

// WantsSessionEvents reports whether any service is configured with
// session_events, so a caller can skip building and queueing events nobody
// receives.
func (r *Router) WantsSessionEvents() bool { return len(r.events) > 0 }

// SessionEvent tells every service configured with session_events about ev,
// in parallel, each through its balancer keyed like the session's requests. It
// returns when all have answered or timed out, with their errors joined.
// Events are best effort: a caller should log a failure, not retry it.
func (r *Router) SessionEvent(ctx context.Context, ev SessionEvent) error {
	if len(r.events) == 0 {
		return nil
	}
	if r.closed.Load() {
		return newError(ErrClosed, protocol.CodeUnavailable, "", "router closed", nil)
	}
	key := ev.User
	if key == "" {
		key = ev.Session
	}
	if len(r.events) == 1 {
		s := r.events[0]
		_, err := r.call(ctx, s, &call{op: opEvent, service: s.name, ev: &ev, node: r.node}, key, true)
		return err
	}
	errs := make([]error, len(r.events))
	var wg sync.WaitGroup
	for i, s := range r.events {
		wg.Go(func() {
			_, errs[i] = r.call(ctx, s, &call{op: opEvent, service: s.name, ev: &ev, node: r.node}, key, true)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Router) route(ctx context.Context, o op, req *Request) (data []byte, err error) {
	var begin time.Time
	var svcName string
	if r.hooks.RequestDone != nil {
		begin = time.Now()
		defer func() {
			var code protocol.Code
			if err != nil {
				code = codeOf(err)
			}
			r.hooks.RequestDone(svcName, code, time.Since(begin))
		}()
	}
	if r.closed.Load() {
		return nil, newError(ErrClosed, protocol.CodeUnavailable, "", "router closed", nil)
	}
	name, method, ok := strings.Cut(req.Route, ".")
	if !ok || name == "" || method == "" {
		return nil, newError(ErrNoRoute, protocol.CodeNotFound, "", "route must be service.method", nil)
	}
	s := r.services[name]
	if s == nil {
		return nil, newError(ErrNoRoute, protocol.CodeNotFound, "", "no route "+quote(req.Route), nil)
	}
	svcName = s.name
	key := req.User
	if key == "" {
		key = req.Session
	}
	c := call{op: o, service: s.name, method: method, req: req}
	return r.call(ctx, s, &c, key, s.cfg.idempotent(method))
}

// call runs one request against s's instances: pick, admit, call through the
// breaker, and on failure pick again while that is safe and allowed. Every
// path returns exactly once.
func (r *Router) call(parent context.Context, s *service, c *call, key string, idempotent bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	defer cancel()
	if d, ok := parent.Deadline(); ok {
		routeDeadline, _ := ctx.Deadline()
		c.callerDeadline = !d.After(routeDeadline)
	}

	snap := s.bal.Snapshot()
	var (
		tried            balancer.Tried
		sent             int
		last             *Error
		sawOpen, sawFull bool
	)
	for {
		if err := ctx.Err(); err != nil {
			return nil, r.ctxError(s, parent, err, last)
		}
		i := snap.Pick(key, &tried)
		if i < 0 || !tried.Add(i) {
			break
		}
		x := snap.Instance(i).Endpoint.(*instance)
		switch x.acquire() {
		case atLimit:
			if s.sticky {
				return nil, newError(ErrOverloaded, protocol.CodeOverloaded, s.name,
					s.name+": the player's instance is at its concurrency limit", nil)
			}
			sawFull = true
			continue
		case gone:
			continue
		}
		data, err := r.attempt(ctx, parent, x, c)
		x.release()
		if err == nil {
			return data, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			// The breaker refused the call: nothing was sent.
			if errors.Is(err, breaker.ErrOpen) {
				sawOpen = true
				continue
			}
			e = newError(ErrUnavailable, protocol.CodeUnavailable, s.name, s.name+": service unavailable", err)
		}
		e.Instance = x.id
		if e.unsent {
			last = e
			continue
		}
		sent++
		if !idempotent || !e.retryable || sent > s.cfg.Retries {
			return nil, e
		}
		last = e
	}
	if last != nil {
		return nil, last
	}
	return nil, s.unavailable(snap, sawOpen, sawFull)
}

// attempt makes one call to x through its breaker. A call to an instance whose
// connection is down is not made, but counted against the breaker as failed:
// that is what opens the circuit of an instance that died while still
// registered, and what probes it once the cooldown is over.
func (r *Router) attempt(ctx, parent context.Context, x *instance, c *call) ([]byte, error) {
	var data []byte
	err := x.br.Do(func() error {
		if !x.tr.reachable() {
			return errUnreachable(c.service, x.id)
		}
		var err error
		data, err = x.tr.invoke(ctx, c)
		if err != nil && (parent.Err() != nil || c.callerDeadline && errors.Is(err, ErrTimeout)) {
			// The caller gave up, or its own deadline (shorter than the
			// route's) ran out: that says nothing about the instance.
			var e *Error
			if errors.As(err, &e) {
				e.outcome = breaker.Ignore
			}
		}
		return err
	})
	return data, err
}

// ctxError is the answer when the request's context ended between attempts.
func (r *Router) ctxError(s *service, parent context.Context, err error, last *Error) *Error {
	if errors.Is(err, context.Canceled) && parent.Err() != nil {
		return newError(ErrCanceled, protocol.CodeUnavailable, s.name, s.name+": request canceled", err)
	}
	e := newError(ErrTimeout, protocol.CodeTimeout, s.name, s.name+": no reply in time", err)
	if last != nil {
		e.Instance = last.Instance
	}
	return e
}

func (r *Router) breakerChanged(service, id string, from, to breaker.State) {
	level := slog.LevelInfo
	if to == breaker.Open {
		level = slog.LevelWarn
	}
	r.log.Log(context.Background(), level, "router: circuit breaker "+to.String(),
		"service", service, "instance", id, "from", from.String(), "to", to.String())
	if h := r.hooks.BreakerStateChange; h != nil {
		h(service, id, from, to)
	}
}

// InstanceStatus describes one instance for operators.
type InstanceStatus struct {
	ID        string
	Addr      string
	Breaker   breaker.State
	InFlight  int64
	Reachable bool
}

// Instances returns the instances the router currently routes service's
// requests to, in ID order, or nil for a service it does not know.
func (r *Router) Instances(service string) []InstanceStatus {
	s := r.services[service]
	if s == nil {
		return nil
	}
	snap := s.bal.Snapshot()
	out := make([]InstanceStatus, snap.Len())
	for i := range out {
		out[i] = snap.Instance(i).Endpoint.(*instance).status()
	}
	return out
}

// Services returns the configured service names, sorted.
func (r *Router) Services() []string {
	names := make([]string, 0, len(r.services))
	for n := range r.services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func codeOf(err error) protocol.Code {
	var p *protocol.Error
	if errors.As(err, &p) {
		return p.Code
	}
	return protocol.CodeInternal
}

// quote quotes a client-supplied route for a reason, bounded in length.
func quote(s string) string {
	return fmt.Sprintf("%q", truncate(s))
}
