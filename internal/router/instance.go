package router

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/peer"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/router/balancer"
	"github.com/heraldgg/herald/protocol"
)

// op says which GameService method a call is.
type op uint8

const (
	opRequest op = iota
	opNotify
	opEvent
)

// call is one attempt's input, shared by the transports.
type call struct {
	op      op
	service string
	method  string
	req     *Request      // opRequest, opNotify
	ev      *SessionEvent // opEvent
	node    string

	// callerDeadline is set when the caller's deadline comes before the
	// route's timeout, so that a timeout is the caller's doing, not the
	// instance's. (The instance may report it first: gRPC sends the deadline
	// along, and the service's side can expire a moment before ours.)
	callerDeadline bool

	// peer is filled by gRPC for an attempt that got a stream; kept here so
	// it shares the call's allocation.
	peer peer.Peer
}

// transport is how one instance is called: gRPC or HTTP.
type transport interface {
	// invoke makes one call and returns the reply data, or an *Error whose
	// outcome, retryable and unsent fields are set. It must honour ctx.
	invoke(ctx context.Context, c *call) ([]byte, error)
	// reachable reports, without blocking or locking, whether the instance's
	// connection is believed to work; false means a call would fail without
	// reaching the instance.
	reachable() bool
	// close releases the connections. Called once, when the instance has left
	// and its last call has finished.
	close()
}

// instance is one instance of a service: its transport, breaker and load. It
// implements balancer.Endpoint.
type instance struct {
	// Immutable after newInstance.
	id          string
	addr        string
	br          *breaker.Breaker
	tr          transport
	maxInFlight int64
	stop        context.CancelFunc // ends the transport's background work

	// refs is 1 for the service's own reference, dropped by retire, plus one
	// per call in flight. Whoever takes it to 0 closes the transport; once 0,
	// acquire fails, so no call can start on a closed connection.
	refs atomic.Int64
}

var _ balancer.Endpoint = (*instance)(nil)

func newInstance(in discovery.Instance, br *breaker.Breaker, tr transport, maxInFlight int, stop context.CancelFunc) *instance {
	x := &instance{id: in.ID, addr: in.Addr, br: br, tr: tr, maxInFlight: int64(maxInFlight), stop: stop}
	x.refs.Store(1)
	return x
}

// Ready implements balancer.Endpoint: the instance is healthy as far as its
// breaker knows. Its concurrency cap is checked by acquire instead, because
// whether a full instance should be skipped depends on the policy. An
// unreachable instance is Ready too: the router counts picking it as a
// failure against its breaker, which is what opens the circuit (and later
// probes it) for an instance whose process died while still registered.
func (x *instance) Ready() bool { return x.br.Ready() }

// InFlight implements balancer.Endpoint.
func (x *instance) InFlight() int64 { return x.refs.Load() - 1 }

// acquireResult says why acquire failed.
type acquireResult uint8

const (
	acquired acquireResult = iota
	atLimit
	gone
)

// acquire counts a call in flight unless the instance is at its limit or gone.
func (x *instance) acquire() acquireResult {
	for {
		n := x.refs.Load()
		switch {
		case n <= 0:
			return gone
		case n-1 >= x.maxInFlight:
			return atLimit
		}
		if x.refs.CompareAndSwap(n, n+1) {
			return acquired
		}
	}
}

// release ends a call started by a successful acquire.
func (x *instance) release() {
	if x.refs.Add(-1) == 0 {
		x.tr.close()
	}
}

// retire drops the service's reference: the instance left discovery, or the
// Router is closing. Calls in flight finish on the open connection.
func (x *instance) retire() {
	x.stop()
	x.release()
}

// status reports the instance for Router.Instances.
func (x *instance) status() InstanceStatus {
	return InstanceStatus{
		ID:        x.id,
		Addr:      x.addr,
		Breaker:   x.br.State(),
		InFlight:  max(x.InFlight(), 0),
		Reachable: x.tr.reachable(),
	}
}

// errUnreachable is what the breaker is told for an instance picked while its
// connection is down; the call is never made.
func errUnreachable(service, id string) *Error {
	e := newError(ErrUnavailable, protocol.CodeUnavailable, service, service+": no instance reachable", nil)
	e.Instance = id
	e.outcome, e.retryable, e.unsent = breaker.Failure, true, true
	return e
}
