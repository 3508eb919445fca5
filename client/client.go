package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/protocol"
)

// Client is one player's connection to Herald, kept up across drops. Its methods
// are safe for concurrent use, except from its own handlers where noted.
type Client struct {
	// Immutable after Dial.
	s      settings
	log    *slog.Logger
	ctx    context.Context // cancelled by Close: interrupts backoff and redials
	cancel context.CancelFunc
	exited chan struct{} // closed when the run goroutine returns
	done   chan struct{} // closed when the client stopped for good

	// at indexes s.targets: the address of the current (or last) connection.
	// Set by Dial, then owned by the run goroutine.
	at int

	nextID atomic.Uint64
	// subs is replaced whole under mu and read without a lock by the reader.
	subs atomic.Pointer[subMap]

	mu sync.Mutex
	// Guarded by mu.
	cur     *conn         // nil while reconnecting
	ready   chan struct{} // closed when cur is set again
	session string
	node    string
	err     error // why the client stopped; nil while it runs
}

// Dial connects to cfg.URL and completes the connect handshake, within ctx and
// cfg.DialTimeout. It does not retry: when the connection fails it tries each of
// cfg.URLs once, in order, and then returns the error (a *protocol.Error when a
// server refused the connect; all of them, joined, when several addresses
// failed), leaving nothing running. A terminal refusal is not tried elsewhere.
// After Dial, the client reconnects on its own until Close or until it gives up.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	c := &Client{
		s:      s,
		log:    s.Logger,
		exited: make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.subs.Store(&subMap{})
	var errs []error
	var cn *conn
	for i, tg := range s.targets {
		if cn, err = c.dial(ctx, tg); err == nil {
			c.at = i
			break
		}
		errs = append(errs, err)
		var term *terminalError
		if errors.As(err, &term) || ctx.Err() != nil {
			// Another node of the cluster would refuse the same way.
			break
		}
	}
	if cn == nil {
		if len(errs) == 1 {
			return nil, errs[0]
		}
		return nil, errors.Join(errs...)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.install(cn)
	go c.run(cn)
	return c, nil
}

// Session returns the server's id for the current (or last) connection.
func (c *Client) Session() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Node returns the name of the node the current (or last) connection is on.
func (c *Client) Node() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node
}

// Done is closed when the client has stopped for good: after Close, a terminal
// disconnect, or when reconnecting gave up.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped (ErrClosed after Close), or nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the client: the connection closes, calls in flight fail with an error
// wrapping ErrClosed, nothing reconnects, and no goroutine of the client remains
// when it returns. It must not be called from a handler (it waits for the reader
// goroutine, which runs the handlers); use go c.Close() there.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	cn := c.cur
	c.mu.Unlock()
	c.cancel()
	if cn != nil {
		cn.closeNormally()
	}
	<-c.exited
	return nil
}

// install makes cn the current connection, unless the client stopped meanwhile.
func (c *Client) install(cn *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false
	}
	c.cur, c.session, c.node = cn, cn.session, cn.node
	if c.ready != nil {
		close(c.ready)
		c.ready = nil
	}
	return true
}

// unset forgets cn as the current connection, so that new calls wait for the next.
func (c *Client) unset(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn {
		c.cur = nil
		c.ready = make(chan struct{})
	}
}

// finish records why the client stopped and closes Done. Only run calls it.
func (c *Client) finish(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	closed := errors.Is(c.err, ErrClosed)
	c.mu.Unlock()
	if !closed {
		c.log.Warn("herald client stopped", "err", err)
		if c.s.OnFail != nil {
			c.s.OnFail(err)
		}
	}
	close(c.done)
}

// run is the client's one long-lived goroutine: it reads the current connection
// and, when it drops, reconnects, then reads the new one.
func (c *Client) run(cn *conn) {
	defer close(c.exited)
	defer c.cancel()
	for {
		cn.startHeartbeat()
		if cn.resumed && cn.resubLeft == 0 && c.s.OnReconnect != nil {
			c.s.OnReconnect()
		}
		cause := c.readLoop(cn)
		c.unset(cn)
		err := cn.shutdown(cause)
		if c.ctx.Err() != nil {
			c.finish(ErrClosed)
			return
		}
		c.log.Info("herald connection dropped", "err", err)
		if c.s.OnDisconnect != nil {
			c.s.OnDisconnect(err)
		}
		var term *terminalError
		if errors.As(err, &term) || errors.Is(err, protocol.ErrFrameTooLarge) {
			c.finish(err)
			return
		}
		if cn = c.reconnect(err); cn == nil {
			return
		}
	}
}

// reconnect redials with backoff and resubscribes. It returns nil once the client
// has finished (closed, or given up).
func (c *Client) reconnect(drop error) *conn {
	last := drop
	for attempt := 0; ; attempt++ {
		if c.s.MaxRetries < 0 || attempt >= c.s.MaxRetries {
			c.finish(fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, attempt, last))
			return nil
		}
		t := time.NewTimer(c.s.backoff(attempt))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			c.finish(ErrClosed)
			return nil
		}
		// Past the node that dropped first: when it is gone, the next attempt
		// already reaches one that may be alive.
		at := (c.at + 1 + attempt) % len(c.s.targets)
		cn, err := c.dial(c.ctx, c.s.targets[at])
		if c.ctx.Err() != nil {
			if err == nil {
				cn.fail(ErrClosed)
			}
			c.finish(ErrClosed)
			return nil
		}
		if err != nil {
			var term *terminalError
			if errors.As(err, &term) {
				c.finish(err)
				return nil
			}
			c.log.Debug("herald redial failed", "attempt", attempt+1, "url", c.s.targets[at].url, "err", err)
			last = err
			continue
		}
		c.at = at
		cn.resumed = true
		c.resubscribe(cn)
		if !c.install(cn) {
			cn.shutdown(ErrClosed)
			c.finish(ErrClosed)
			return nil
		}
		return cn
	}
}

// resubscribe asks the new connection for every confirmed subscription, from the
// last position delivered, before the conn becomes current: calls waiting for it
// send their frames after these, so a Subscribe racing a reconnect cannot be
// answered "already subscribed". Subscriptions whose first subscribe is still in
// flight are left to that call, which fails with the old connection.
func (c *Client) resubscribe(cn *conn) {
	for _, s := range *c.subs.Load() {
		if !s.confirmed {
			continue
		}
		s.active = false
		cl := getCall()
		cl.want, cl.sub, cl.internal = protocol.Op_OP_SUBSCRIBED, s, true
		cl.since, cl.hasSince = s.pos, s.pos.known()
		f := frame{op: protocol.Op_OP_SUB, id: c.nextID.Add(1), topic: s.topic, since: s.pos, hasSince: cl.hasSince}
		if !cn.register(f.id, cl) {
			putCall(cl)
			return
		}
		cn.resubLeft++
		if cn.send(c.ctx, &f, nil) != nil {
			return // the reader will see the dead connection at once
		}
	}
}

// acquire returns the current connection, waiting for a reconnect if there is
// none.
func (c *Client) acquire(ctx context.Context, timeout <-chan time.Time) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready, err := c.cur, c.ready, c.err
		c.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case cn != nil:
			return cn, nil
		}
		select {
		case <-ready:
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, ErrTimeout
		}
	}
}

// do sends f and waits for the answer, which the reader writes into cl. A call
// made while the client reconnects waits for the new connection; a call in flight
// when its connection drops fails with ErrDisconnected. It returns the connection
// f went out on, or nil when it was not sent.
func (c *Client) do(ctx context.Context, f *frame, cl *call) (*conn, error) {
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		cl.timer.Reset(c.s.RequestTimeout)
		defer cl.timer.Stop()
		timeout = cl.timer.C
	}
	var cn *conn
	for {
		var err error
		if cn, err = c.acquire(ctx, timeout); err != nil {
			return nil, err
		}
		f.id = c.nextID.Add(1)
		if cn.register(f.id, cl) {
			break
		}
		c.unset(cn) // dead but not yet noticed by run: wait for its successor
	}
	if err := cn.send(ctx, f, timeout); err != nil {
		if cn.forget(f.id) {
			return nil, err
		}
		<-cl.done // the drop failed it meanwhile
		return nil, err
	}
	var err error
	select {
	case <-cl.done:
		return cn, cl.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = ErrTimeout
	}
	if !cn.forget(f.id) {
		<-cl.done // answered while we gave up: wait, so cl can be reused
	}
	return cn, err
}

// Subscribe subscribes to topic and returns once the server confirmed it. handler
// receives the topic's messages in order, on the reader goroutine, each at most
// once: after a reconnect the client resubscribes from the last message delivered
// and drops any repeat. A subscribe that fails leaves no subscription behind.
func (c *Client) Subscribe(ctx context.Context, topic string, handler func(Message), opts ...SubscribeOption) (Subscription, error) {
	if handler == nil {
		return Subscription{}, errors.New("client: Subscribe needs a handler")
	}
	s := &subscription{topic: topic, handler: handler}
	for _, o := range opts {
		o(s)
	}
	if err := c.addSub(s); err != nil {
		return Subscription{}, err
	}
	cl := getCall()
	defer putCall(cl)
	cl.want, cl.sub = protocol.Op_OP_SUBSCRIBED, s
	cl.since, cl.hasSince = s.pos, s.pos.known()
	f := frame{op: protocol.Op_OP_SUB, topic: topic, since: s.pos, hasSince: cl.hasSince}
	cn, err := c.do(ctx, &f, cl)
	if err != nil {
		c.removeSub(s)
		var perr *protocol.Error
		if cn != nil && !errors.Is(err, ErrDisconnected) && !errors.As(err, &perr) {
			// We gave up while the server may have said yes: undo it, without
			// waiting, or a later Subscribe would be "already subscribed".
			cn.send(context.Background(), &frame{op: protocol.Op_OP_UNSUB, id: c.nextID.Add(1), topic: topic}, nil)
		}
		return Subscription{}, err
	}
	return Subscription{Topic: topic, Position: cl.pos, Recovered: cl.recovered}, nil
}

// Unsubscribe ends the subscription to topic. Its handler is not called again
// once Unsubscribe starts. While the client is reconnecting it returns at once:
// the server forgot the subscription with the connection, and it is not renewed.
func (c *Client) Unsubscribe(ctx context.Context, topic string) error {
	c.mu.Lock()
	s := (*c.subs.Load())[topic]
	if s != nil {
		c.subs.Store(ptr(c.subs.Load().without(topic)))
	}
	cur := c.cur
	c.mu.Unlock()
	if s == nil {
		return &protocol.Error{Code: protocol.CodeNotSubscribed, Reason: topic}
	}
	if cur == nil {
		return nil
	}
	cl := getCall()
	defer putCall(cl)
	cl.want = protocol.Op_OP_UNSUBSCRIBED
	_, err := c.do(ctx, &frame{op: protocol.Op_OP_UNSUB, topic: topic}, cl)
	var perr *protocol.Error
	if errors.Is(err, ErrDisconnected) || (errors.As(err, &perr) && perr.Code == protocol.CodeNotSubscribed) {
		return nil // either way the server holds no subscription now
	}
	return err
}

// Publish sends data to topic and returns the message's position in the topic.
func (c *Client) Publish(ctx context.Context, topic string, data []byte) (Position, error) {
	cl := getCall()
	defer putCall(cl)
	cl.want = protocol.Op_OP_PUBLISHED
	if _, err := c.do(ctx, &frame{op: protocol.Op_OP_PUB, topic: topic, data: data}, cl); err != nil {
		return Position{}, err
	}
	return cl.pos, nil
}

// Request calls route ("service.method") on a game service through Herald and
// returns its reply. A service's refusal is a *protocol.Error.
func (c *Client) Request(ctx context.Context, route string, data []byte, meta map[string]string) ([]byte, error) {
	cl := getCall()
	defer putCall(cl)
	cl.want = protocol.Op_OP_REPLY
	if _, err := c.do(ctx, &frame{op: protocol.Op_OP_REQ, route: route, data: data, meta: meta}, cl); err != nil {
		return nil, err
	}
	return cl.data, nil
}

// Move sets this session's position on a map, for region messages and enter and
// leave events.
func (c *Client) Move(ctx context.Context, mapName string, x, y float64) error {
	cl := getCall()
	defer putCall(cl)
	cl.want = protocol.Op_OP_MOVED
	_, err := c.do(ctx, &frame{op: protocol.Op_OP_MOVE, mapName: mapName, x: x, y: y}, cl)
	return err
}

// Ping measures a round trip to the server.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	cl := getCall()
	defer putCall(cl)
	cl.want = protocol.Op_OP_PONG
	start := time.Now()
	if _, err := c.do(ctx, &frame{op: protocol.Op_OP_PING}, cl); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (c *Client) addSub(s *subscription) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	m := *c.subs.Load()
	if _, ok := m[s.topic]; ok {
		return &protocol.Error{Code: protocol.CodeAlreadySubscribed, Reason: s.topic}
	}
	c.subs.Store(ptr(m.with(s)))
	return nil
}

// removeSub removes s, unless its topic was subscribed anew meanwhile.
func (c *Client) removeSub(s *subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := *c.subs.Load(); m[s.topic] == s {
		c.subs.Store(ptr(m.without(s.topic)))
	}
}

func ptr[T any](v T) *T { return &v }

// call is one request waiting for its answer. Calls are pooled: one is reused only
// once it is out of the pending map and its done has been received, so the reader
// can never write into a call that serves someone else.
type call struct {
	done  chan struct{} // one token when the fields below are set
	timer *time.Timer   // RequestTimeout, when the context has no deadline

	// Set by the caller before registering.
	want     protocol.Op
	sub      *subscription // sub: the subscription the answer confirms
	since    Position      // sub: the position asked for
	hasSince bool
	internal bool // a resubscribe: nobody waits, the reader finishes it
	retry    int  // a resubscribe asked again after a passing refusal: its attempt

	// Set by the reader before done.
	err       error
	data      []byte
	pos       Position
	recovered bool
}

var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{done: make(chan struct{}, 1), timer: t}
}}

func getCall() *call { return callPool.Get().(*call) }

func putCall(cl *call) {
	done, timer := cl.done, cl.timer
	*cl = call{done: done, timer: timer}
	callPool.Put(cl)
}

// finish ends a call with an error; the reader and shutdown call it.
func (cl *call) finish(err error) {
	if cl.internal {
		putCall(cl)
		return
	}
	cl.err = err
	cl.done <- struct{}{}
}
