package nats

import (
	"context"
	"strconv"
	"strings"
	"sync"

	natsgo "github.com/nats-io/nats.go"
)

// mux routes the replies of presence requests from one wildcard subscription
// made at Start. A subscription per request cost a SUB and an UNSUB and, in
// nats.go, a 64k-slot channel to allocate and zero: it made UserNodes six
// times slower than the requests themselves (BenchmarkUserNodes).
type mux struct {
	prefix string // "<inbox>.", then "<exchange>[.<i>]"

	mu      sync.Mutex
	next    uint64
	waiting map[string]chan *natsgo.Msg // Guarded by mu: exchange → its replies
}

func newMux(inbox string) *mux {
	return &mux{prefix: inbox + ".", waiting: make(map[string]chan *natsgo.Msg)}
}

// deliver runs on the subscription's goroutine. A reply for an exchange that
// ended (its caller gave up) is dropped, and so is one past the capacity its
// caller asked for, which the caller never has outstanding.
func (m *mux) deliver(msg *natsgo.Msg) {
	id, _, _ := strings.Cut(strings.TrimPrefix(msg.Subject, m.prefix), ".")
	m.mu.Lock()
	ch := m.waiting[id]
	m.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- msg:
	default:
	}
}

// exchange is one caller's share of the mux: replies to subjects under its
// reply prefix arrive on its channel until end.
type exchange struct {
	m     *mux
	id    string
	reply string // reply subject; add "." and an index to tell replies apart
	ch    chan *natsgo.Msg
}

// open starts an exchange expecting at most capacity replies outstanding.
func (m *mux) open(capacity int) *exchange {
	ch := make(chan *natsgo.Msg, capacity)
	m.mu.Lock()
	m.next++
	id := strconv.FormatUint(m.next, 36)
	m.waiting[id] = ch
	m.mu.Unlock()
	return &exchange{m: m, id: id, reply: m.prefix + id, ch: ch}
}

func (e *exchange) end() {
	e.m.mu.Lock()
	delete(e.m.waiting, e.id)
	e.m.mu.Unlock()
}

// recv returns the next reply.
func (e *exchange) recv(ctx context.Context) (*natsgo.Msg, error) {
	select {
	case msg := <-e.ch:
		return msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
