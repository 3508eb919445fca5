package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/heraldgg/herald/internal/discovery"
)

// ErrInvalidConfig is wrapped by New for a Config that fails Validate.
var ErrInvalidConfig = errors.New("etcd: invalid config")

// Registry is a discovery.Registry on etcd. Create it with New.
type Registry struct {
	// Immutable after New.
	cfg    Config
	log    *slog.Logger
	client *clientv3.Client
	// ctx is the parent of every registration and watch; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	// wg counts keepalive goroutines.
	wg sync.WaitGroup

	mu sync.Mutex
	// Guarded by mu.
	closed bool
	regs   map[*registration]struct{}
}

var _ discovery.Registry = (*Registry)(nil)

// New returns a Registry for cfg. It does no network I/O: the etcd client
// connects on first use and reconnects by itself. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg = cfg.WithDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	client, err := clientv3.New(clientConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("etcd: client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{
		cfg:    cfg,
		log:    logger.With("component", "discovery/etcd"),
		client: client,
		ctx:    ctx,
		cancel: cancel,
		regs:   make(map[*registration]struct{}),
	}, nil
}

// clientConfig is the etcd client configuration for cfg (with defaults).
func clientConfig(cfg Config) clientv3.Config {
	return clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// Without keepalive pings a half-open connection (a partition
		// without a RST) would leave watches silently waiting forever.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		PermitWithoutStream:  true,
		// gRPC's default reconnect backoff grows to 120 s, which would leave
		// us offline for minutes after a long etcd outage has ended.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   maxBackoff,
			},
			MinConnectTimeout: cfg.DialTimeout,
		})},
		// Our own slog lines report what matters; the client's zap output
		// would be a second, differently formatted log stream.
		Logger: zap.NewNop(),
	}
}

// Close stops every Watch (they return discovery.ErrClosed), revokes the
// leases of registrations not yet deregistered so their instances disappear
// at once, and closes the etcd client. Revoking waits at most
// Config.RequestTimeout; if etcd is unreachable the instances expire after
// their lease TTL instead, and Close returns the error.
func (r *Registry) Close() error {
	return r.close(true)
}

// close is Close; with deregister false it abandons registrations the way a
// crashed process would, which tests use to watch a lease expire.
func (r *Registry) close(deregister bool) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	regs := make([]*registration, 0, len(r.regs))
	for g := range r.regs {
		regs = append(regs, g)
	}
	r.mu.Unlock()

	// Cancelling first stops keepalives and watches; revoking needs only
	// the client, which stays open until after the revokes.
	r.cancel()
	var errs []error
	if deregister {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RequestTimeout)
		for _, g := range regs {
			errs = append(errs, g.deregister(ctx))
		}
		cancel()
	}
	r.wg.Wait()
	errs = append(errs, r.client.Close())
	return errors.Join(errs...)
}

// isClosed reports whether Close has started.
func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// requestCtx bounds one request by Config.RequestTimeout.
func (r *Registry) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.RequestTimeout)
}

// Backoff between retries against etcd. maxBackoff also caps gRPC's reconnect
// backoff, so recovery after etcd returns takes at most about this long.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// retry is an exponential backoff with jitter. Owned by one goroutine.
type retry struct {
	next time.Duration
}

// wait sleeps for the next backoff interval; it returns false if ctx ended
// first.
func (b *retry) wait(ctx context.Context) bool {
	if b.next == 0 {
		b.next = minBackoff
	}
	// ±20% jitter keeps many nodes that lost etcd together from
	// reconnecting in lockstep.
	d := b.next - b.next/5 + rand.N(2*b.next/5+1)
	b.next = min(2*b.next, maxBackoff)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *retry) reset() { b.next = 0 }
