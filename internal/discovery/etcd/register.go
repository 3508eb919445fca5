package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/heraldgg/herald/internal/discovery"
)

// registration is one live Register call.
type registration struct {
	// Immutable after Register.
	r      *Registry
	key    string
	value  string
	log    *slog.Logger
	cancel context.CancelFunc // stops keepAlive
	done   chan struct{}      // closed when keepAlive returns

	// lease is the lease the key is held under; 0 once the registration
	// was superseded. Owned by keepAlive until done is closed, then read
	// by deregister.
	lease clientv3.LeaseID

	once sync.Once
	err  error // result of the first deregister; written inside once
}

// Register implements discovery.Registry. It blocks for one Grant and one Put,
// each bounded by ctx and Config.RequestTimeout; a returned etcd error is
// worth retrying.
func (r *Registry) Register(ctx context.Context, in discovery.Instance) (func(context.Context) error, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if r.isClosed() {
		return nil, discovery.ErrClosed
	}
	value, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("etcd: encode %s/%s: %w", in.Service, in.ID, err)
	}
	g := &registration{
		r:     r,
		key:   discovery.Key(r.cfg.Prefix, in.Service, in.ID),
		value: string(value),
		log:   r.log.With("service", in.Service, "id", in.ID),
		done:  make(chan struct{}),
	}
	// The first registration overwrites any holder of the key: the contract
	// says the newest registration of an ID wins.
	lease, err := g.put(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("etcd: register %s: %w", g.key, err)
	}
	g.lease = lease

	regCtx, cancel := context.WithCancel(r.ctx)
	g.cancel = cancel
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		close(g.done)
		g.revoke(context.Background())
		return nil, discovery.ErrClosed
	}
	r.regs[g] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()

	go g.keepAlive(regCtx)
	return g.deregister, nil
}

// put grants a fresh lease and puts the key under it. If onlyOurs is set, it
// puts only if the key is absent or still holds g's value, and returns
// errSuperseded otherwise: a newer registration of this ID must not be
// overwritten by an older process that happened to outlive an etcd outage.
func (g *registration) put(ctx context.Context, onlyOurs bool) (clientv3.LeaseID, error) {
	r := g.r
	rctx, cancel := r.requestCtx(ctx)
	defer cancel()
	grant, err := r.client.Grant(rctx, r.cfg.leaseSeconds())
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	op := clientv3.OpPut(g.key, g.value, clientv3.WithLease(grant.ID))
	if !onlyOurs {
		if _, err := r.client.Do(rctx, op); err != nil {
			// It may have been applied all the same; Register reports a
			// failure, so make sure the key does not outlive it.
			g.revokeLease(grant.ID)
			return 0, fmt.Errorf("put: %w", err)
		}
		return grant.ID, nil
	}
	ifAbsent := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(g.key), "=", 0)}, []clientv3.Op{op}, nil)
	resp, err := r.client.Txn(rctx).
		If(clientv3.Compare(clientv3.Value(g.key), "=", g.value)).
		Then(op).
		Else(ifAbsent).
		Commit()
	if err != nil {
		// It may have been applied all the same; then our value is in place
		// and the next attempt's condition still holds.
		return 0, fmt.Errorf("put: %w", err)
	}
	if !resp.Succeeded && !resp.Responses[0].GetResponseTxn().GetSucceeded() {
		g.revokeLease(grant.ID)
		return 0, errSuperseded
	}
	return grant.ID, nil
}

var errSuperseded = errors.New("key holds another registration")

// keepAlive keeps g's lease alive and, whenever the lease is lost, puts the
// key again under a fresh one. It returns when ctx is done or when another
// registration of the same ID replaced this one.
func (g *registration) keepAlive(ctx context.Context) {
	defer g.r.wg.Done()
	defer close(g.done)
	var bo retry
	for {
		ch, err := g.r.client.KeepAlive(ctx, g.lease)
		if err == nil {
			for range ch {
				// Each response renews the lease; the channel closes when the
				// lease is gone (expired, revoked, or no answer within its TTL)
				// or ctx is done.
			}
		}
		if ctx.Err() != nil {
			return
		}
		g.log.Warn("lost the registration lease; registering again", "lease", int64(g.lease), "err", err)
		for {
			lease, err := g.put(ctx, true)
			if err == nil {
				// The old lease may still exist if etcd came back with it;
				// it holds nothing now, so don't leave it for its TTL.
				g.revokeLease(g.lease)
				g.lease = lease
				g.log.Info("registered again", "lease", int64(lease))
				bo.reset()
				break
			}
			if errors.Is(err, errSuperseded) {
				g.log.Warn("another registration of this instance ID replaced this one; no longer keeping it alive")
				g.lease = 0
				return
			}
			if ctx.Err() != nil {
				return
			}
			g.log.Warn("registering again failed; retrying", "err", err)
			if !bo.wait(ctx) {
				return
			}
		}
	}
}

// deregister stops keeping g alive and revokes its lease, which deletes the
// key unless a newer registration has taken it over. It is idempotent: later
// calls return the first call's result.
func (g *registration) deregister(ctx context.Context) error {
	g.once.Do(func() {
		g.cancel()
		<-g.done
		g.r.mu.Lock()
		delete(g.r.regs, g)
		g.r.mu.Unlock()
		g.err = g.revoke(ctx)
	})
	return g.err
}

// revoke revokes g.lease. Call only after g.done is closed.
func (g *registration) revoke(ctx context.Context) error {
	if g.lease == 0 {
		return nil
	}
	rctx, cancel := g.r.requestCtx(ctx)
	defer cancel()
	_, err := g.r.client.Revoke(rctx, g.lease)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: deregister %s: revoke lease %x (the key expires with it): %w", g.key, int64(g.lease), err)
	}
	return nil
}

// revokeLease revokes a lease that never held the key, so it does not linger
// for its TTL. Best effort: it expires anyway.
func (g *registration) revokeLease(id clientv3.LeaseID) {
	ctx, cancel := g.r.requestCtx(context.Background())
	defer cancel()
	_, _ = g.r.client.Revoke(ctx, id)
}
