package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldgg/herald/protocol"
)

// Errors of the client itself; failures the server reports are *protocol.Error.
var (
	// ErrDisconnected is wrapped by the error of every call that was in flight when
	// its connection dropped (the server may or may not have acted on it), and by
	// the error given to OnDisconnect.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrClosed is returned by calls on a client after Close, and by Err.
	ErrClosed = errors.New("client: closed")
	// ErrHeartbeatTimeout is the cause of a drop when nothing arrived from the
	// server for 1.5 × its heartbeat interval.
	ErrHeartbeatTimeout = errors.New("client: server silent for 1.5 × heartbeat")
	// ErrGaveUp is wrapped by the error given to OnFail when MaxRetries redials in a
	// row failed, or when reconnecting is turned off.
	ErrGaveUp = errors.New("client: gave up reconnecting")
	// ErrTimeout is returned by a call whose context had no deadline and that took
	// longer than Config.RequestTimeout. It wraps context.DeadlineExceeded.
	ErrTimeout = fmt.Errorf("client: request timed out: %w", context.DeadlineExceeded)
)

// Position is a place in a topic's stream: see protocol.Position. It is a plain
// value, unlike the generated protocol.Position, which must not be copied.
type Position struct {
	Offset uint64
	Epoch  string
}

func (p Position) known() bool { return p.Offset != 0 || p.Epoch != "" }

// Message is one msg frame from the server.
type Message struct {
	// Kind tells how the message reached this client: a topic message (delivered to
	// the subscription's handler), broadcast, push or region (to Config.OnMessage).
	Kind protocol.Kind
	// Topic, Offset and Epoch are set for topic messages.
	Topic  string
	Offset uint64
	Epoch  string
	// Data is the application payload, which the handler may keep: the client never
	// reuses it, unless Config.BorrowData says otherwise. For the JSON codec it is
	// the JSON value as sent, compacted.
	Data []byte
	// Map, X and Y are set for region messages.
	Map  string
	X, Y float64
	// User is the publishing user, when the server knows it.
	User string
	// Session is the session a push was addressed to.
	Session string
}

// EventKind tells an enter from a leave.
type EventKind uint8

const (
	// EventEnter: Entity came into this session's area of interest.
	EventEnter EventKind = iota + 1
	// EventLeave: Entity left it.
	EventLeave
	// EventMoved: Entity, which this session sees, moved to X, Y; or the game
	// placed this session there (Entity is then this session's id).
	EventMoved
)

func (k EventKind) String() string {
	switch k {
	case EventEnter:
		return "enter"
	case EventLeave:
		return "leave"
	case EventMoved:
		return "moved"
	}
	return "unknown"
}

// Event is an enter, leave or unsolicited moved frame: another session moved into,
// out of or within the area of interest around this session's position on a map.
type Event struct {
	Kind   EventKind
	Map    string
	X, Y   float64
	Entity string
}

// Subscription is the server's answer to a subscribe.
type Subscription struct {
	Topic string
	// Position is the topic's position when the subscription began: messages after
	// it are delivered live.
	Position Position
	// Recovered reports, for a subscribe with Since, that every message after the
	// given position follows (before live ones). False with Since means the history
	// is gone: the application must resynchronise some other way.
	Recovered bool
}

// SubscribeOption changes one subscription.
type SubscribeOption func(*subscription)

// Since asks the server for every message after p (for example the last one the
// application stored), delivered before live messages.
func Since(p Position) SubscribeOption {
	return func(s *subscription) { s.pos = p }
}

// OnUnrecovered sets a function called, on the reader goroutine, when the server
// could not replay the history after the position asked for (by Since, or by the
// client itself when resubscribing after a reconnect): messages between since and
// now are lost to this client.
func OnUnrecovered(fn func(since, now Position)) SubscribeOption {
	return func(s *subscription) { s.onUnrecovered = fn }
}

// OnError sets a function called, on the reader goroutine, when resubscribing after
// a reconnect failed for good (for example the server now denies the topic). The
// subscription is gone then; without OnError the failure is only logged. A
// refusal that passes — unavailable, timeout, internal or rate-limited, such as
// a node whose broker is down for a moment — is not reported: the client asks
// again on the same connection, with the reconnect backoff, and the subscription
// resumes from where it stopped once the node accepts.
func OnError(fn func(err error)) SubscribeOption {
	return func(s *subscription) { s.onError = fn }
}

// subscription is one topic's local state.
type subscription struct {
	// Immutable once registered.
	topic         string
	handler       func(Message)
	onUnrecovered func(since, now Position)
	onError       func(error)

	// Owned by the reader goroutine once registered (Subscribe sets pos before).
	pos    Position // last position delivered (or asked for with Since)
	active bool     // the server confirmed it on the current connection
	// confirmed: the server confirmed it once, so every reconnect renews it, even
	// when the connection before dropped with the renewal unanswered.
	confirmed bool
}

// subMap is an immutable snapshot of the subscriptions, replaced whole under
// Client.mu, so that the reader looks a topic up without a lock.
type subMap map[string]*subscription

func (m subMap) with(s *subscription) subMap {
	n := make(subMap, len(m)+1)
	for k, v := range m {
		n[k] = v
	}
	n[s.topic] = s
	return n
}

func (m subMap) without(topic string) subMap {
	n := make(subMap, len(m))
	for k, v := range m {
		if k != topic {
			n[k] = v
		}
	}
	return n
}
