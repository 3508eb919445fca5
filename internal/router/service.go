package router

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/internal/discovery"
	"github.com/heraldgg/herald/internal/router/balancer"
	"github.com/heraldgg/herald/protocol"
)

// service is one configured service: its policy, its balancer and the
// instances discovery reports for it.
type service struct {
	// Immutable after New.
	name string
	cfg  ServiceConfig
	bal  *balancer.Balancer
	r    *Router
	// sticky: the hash policy, under which a request never leaves a live
	// player's instance just because it is busy.
	sticky bool

	// ready is set once discovery has delivered the first set.
	ready atomic.Bool

	// Owned by the service's watch goroutine (and by Close once that has
	// ended): the current instances by ID, to reuse an instance, with its
	// connection and breaker, across sets in which it stays.
	members map[string]*instance
}

// watch follows discovery for the service until ctx is done. Watch only
// returns early if the registry is closed or fails outright; the last set
// stays in use meanwhile, and the watch is resumed.
func (s *service) watch(ctx context.Context) {
	const retry = time.Second
	for {
		err := s.r.reg.Watch(ctx, s.name, s.update)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, discovery.ErrClosed) {
			s.r.log.Warn("router: discovery closed; routing on the last known instances", "service", s.name)
			return
		}
		s.r.log.Error("router: discovery watch failed; retrying", "service", s.name, "err", err, "retry", retry)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// update is discovery's callback: it builds the next snapshot, reusing
// instances whose address did not change, swaps it in, then retires the
// instances that left.
func (s *service) update(set []discovery.Instance) {
	next := make(map[string]*instance, len(set))
	list := make([]balancer.Instance, 0, len(set))
	var joined, left []string
	for _, in := range set {
		x := s.members[in.ID]
		if x == nil || x.addr != in.Addr {
			var err error
			if x, err = s.newInstance(in); err != nil {
				s.r.log.Error("router: cannot use instance", "service", s.name, "instance", in.ID, "addr", in.Addr, "err", err)
				continue
			}
			joined = append(joined, in.ID)
		}
		next[in.ID] = x
		list = append(list, balancer.Instance{ID: in.ID, Weight: in.Weight, Tags: in.Tags, Endpoint: x})
	}
	s.bal.Update(list)
	for id, x := range s.members {
		if next[id] != x {
			x.retire()
			left = append(left, id)
		}
	}
	s.members = next
	s.ready.Store(true)
	if len(joined) > 0 || len(left) > 0 {
		s.r.log.Info("router: instances changed", "service", s.name, "instances", len(next), "joined", joined, "left", left)
	}
}

func (s *service) newInstance(in discovery.Instance) (*instance, error) {
	name := s.name + "/" + in.ID
	br, err := breaker.New(name, s.cfg.Breaker, breaker.Hooks{
		OnStateChange: func(_ string, from, to breaker.State) { s.r.breakerChanged(s.name, in.ID, from, to) },
		Classify:      classify,
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(s.r.ctx)
	var tr transport
	switch s.cfg.Protocol {
	case ProtocolHTTP:
		tr, err = newHTTPTransport(in.Addr, s.cfg.HTTP)
	default:
		var g *grpcTransport
		if g, err = newGRPCTransport(in.Addr, s.r.dialOpts); err == nil {
			tr = g
			s.r.wg.Go(func() { g.watch(ctx) })
		}
	}
	if err != nil {
		stop()
		return nil, err
	}
	return newInstance(in, br, tr, s.cfg.MaxInFlight, stop), nil
}

// retireAll retires every member; the Router is closing and the watch is over.
func (s *service) retireAll() {
	s.bal.Update(nil)
	for _, x := range s.members {
		x.retire()
	}
	s.members = nil
}

// unavailable explains why no instance of snap could take a call that tried
// none: there are none, or every one is open, at its limit or unreachable.
func (s *service) unavailable(snap *balancer.Snapshot, sawOpen, sawFull bool) *Error {
	open, full := sawOpen, sawFull
	for i := range snap.Len() {
		x := snap.Instance(i).Endpoint.(*instance)
		open = open || !x.br.Ready()
		full = full || x.InFlight() >= x.maxInFlight
	}
	switch {
	case snap.Len() == 0:
		return newError(ErrUnavailable, protocol.CodeUnavailable, s.name, s.name+": no instance available", nil)
	case open:
		return newError(ErrCircuitOpen, protocol.CodeCircuitOpen, s.name, s.name+": circuit open on every instance", nil)
	case full:
		return newError(ErrOverloaded, protocol.CodeOverloaded, s.name, s.name+": every instance is at its concurrency limit", nil)
	}
	return newError(ErrUnavailable, protocol.CodeUnavailable, s.name, s.name+": no instance reachable", nil)
}
