package client

import (
	"errors"
	"time"

	"github.com/heraldgg/herald/protocol"
)

// A resubscription after a reconnect can be refused for a passing reason: the
// new node's broker is down or slow for a moment (a Redis restart, a frozen
// Redis), so it cannot read the topic's history. Dropping the subscription
// then would lose it for good over a blip; instead it is asked again on the
// same connection, with the reconnect backoff, until the node says yes or no
// for good, or the connection drops (and the next one renews it anyway).
// Meanwhile the subscription receives nothing, and its position stays where
// it was, so the eventual answer replays what was missed.
//
// Each retry is a timer of the connection, like the heartbeat, rather than a
// goroutine; shutdown stops them all.

// passing reports whether a refusal describes the node's momentary state
// rather than the request: asking again later may succeed.
func passing(err error) bool {
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		return false
	}
	switch perr.Code {
	case protocol.CodeUnavailable, protocol.CodeTimeout, protocol.CodeInternal, protocol.CodeRateLimited:
		return true
	}
	return false
}

// retry is one resubscription waiting to be asked again.
type retry struct {
	cn       *conn
	timer    *time.Timer // set under cn.retryMu, which fire takes first
	sub      *subscription
	since    Position
	hasSince bool
	attempt  int // of the next ask
}

// retryLater asks for s again after the backoff for attempt, from since. The
// reader calls it when the answer to a resubscription was a passing refusal.
func (cn *conn) retryLater(s *subscription, since Position, hasSince bool, attempt int) {
	cn.retryMu.Lock()
	defer cn.retryMu.Unlock()
	if cn.retryStopped {
		return
	}
	r := &retry{cn: cn, sub: s, since: since, hasSince: hasSince, attempt: attempt + 1}
	r.timer = time.AfterFunc(cn.c.s.backoff(attempt), r.fire)
	cn.retries[r] = struct{}{}
}

func (r *retry) fire() {
	cn := r.cn
	cn.retryMu.Lock()
	defer cn.retryMu.Unlock()
	if cn.retryStopped {
		return
	}
	delete(cn.retries, r)
	c, s := cn.c, r.sub
	if (*c.subs.Load())[s.topic] != s {
		return // unsubscribed meanwhile
	}
	cl := getCall()
	cl.want, cl.sub, cl.internal, cl.retry = protocol.Op_OP_SUBSCRIBED, s, true, r.attempt
	cl.since, cl.hasSince = r.since, r.hasSince
	f := frame{op: protocol.Op_OP_SUB, id: c.nextID.Add(1), topic: s.topic, since: r.since, hasSince: r.hasSince}
	if !cn.register(f.id, cl) {
		putCall(cl)
		return
	}
	// A failed send fails the connection, whose shutdown finishes the call.
	_ = cn.send(c.ctx, &f, nil)
}

// stopRetries cancels every pending retry and waits for a running one to end,
// so that none outlives the conn.
func (cn *conn) stopRetries() {
	cn.retryMu.Lock()
	defer cn.retryMu.Unlock()
	cn.retryStopped = true
	for r := range cn.retries {
		r.timer.Stop()
	}
	clear(cn.retries)
}
