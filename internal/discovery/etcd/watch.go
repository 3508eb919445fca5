package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/heraldgg/herald/internal/discovery"
)

// Watch implements discovery.Registry. The first set is delivered after the
// first successful Get; until etcd answers once, fn is not called at all.
func (r *Registry) Watch(ctx context.Context, service string, fn func([]discovery.Instance)) error {
	if err := discovery.ValidateName(service); err != nil {
		return err
	}
	if r.isClosed() {
		return discovery.ErrClosed
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()

	w := &watcher{
		r:       r,
		service: service,
		prefix:  discovery.ServicePrefix(r.cfg.Prefix, service),
		fn:      fn,
		log:     r.log.With("service", service),
		byKey:   make(map[string]discovery.Instance),
	}
	w.run(wctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	return discovery.ErrClosed
}

// watcher is the state of one Watch call. Owned by the Watch goroutine.
type watcher struct {
	r       *Registry
	service string
	prefix  string
	fn      func([]discovery.Instance)
	log     *slog.Logger

	// byKey is the current set as known from etcd.
	byKey map[string]discovery.Instance
	// last is what fn was last given; nil before the first delivery.
	last []discovery.Instance
}

// healthyWatch is how long a watch must have run before its failure is
// treated as new trouble rather than the same outage continuing, resetting
// the backoff.
const healthyWatch = 10 * time.Second

// run delivers sets until ctx is done: Get, then follow a watch from the
// revision after it; on any failure back off and start over with a fresh Get.
func (w *watcher) run(ctx context.Context) {
	var bo retry
	for {
		rev, err := w.resync(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("reading instances from etcd failed; keeping the last known set", "err", err)
			if !bo.wait(ctx) {
				return
			}
			continue
		}
		start := time.Now()
		err = w.follow(ctx, rev+1)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= healthyWatch {
			bo.reset()
		}
		w.log.Warn("etcd watch interrupted; keeping the last known set and reading it again", "err", err)
		if !bo.wait(ctx) {
			return
		}
	}
}

// resync replaces the known set with a fresh read and delivers it if it
// changed. It returns the revision the read saw.
func (w *watcher) resync(ctx context.Context) (int64, error) {
	rctx, cancel := w.r.requestCtx(ctx)
	defer cancel()
	resp, err := w.r.client.Get(rctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	clear(w.byKey)
	for _, kv := range resp.Kvs {
		w.put(kv)
	}
	w.deliver()
	return resp.Header.Revision, nil
}

// follow applies watch events from rev on until the watch fails or ctx is
// done. While etcd is unreachable the client keeps the stream open and
// resumes it when etcd returns, so follow just waits.
func (w *watcher) follow(ctx context.Context, rev int64) error {
	// Without a leader, a member's data may be stale; RequireLeader makes it
	// cancel the watch instead, and we resync through a member that has one.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := w.r.client.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	for resp := range ch {
		if err := resp.Err(); err != nil {
			// Includes compaction past rev: the events are gone, so only a
			// fresh Get can tell us the current set.
			return err
		}
		if resp.Canceled {
			return errWatchCanceled
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case mvccpb.PUT:
				w.put(ev.Kv)
			case mvccpb.DELETE:
				delete(w.byKey, string(ev.Kv.Key))
			}
		}
		w.deliver()
	}
	return errWatchClosed
}

var (
	errWatchCanceled = errors.New("watch canceled by etcd")
	errWatchClosed   = errors.New("watch channel closed")
)

// put records one key of the prefix. A key that does not decode into a valid
// instance is left out: a bad write by one service must not break routing to
// the rest.
func (w *watcher) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	in, err := w.decode(key, kv.Value)
	if err != nil {
		w.log.Warn("ignoring an invalid instance key", "key", key, "err", err)
		delete(w.byKey, key)
		return
	}
	w.byKey[key] = in
}

// decode reads an instance, taking its service and ID from the key, which is
// authoritative.
func (w *watcher) decode(key string, value []byte) (discovery.Instance, error) {
	var in discovery.Instance
	if err := json.Unmarshal(value, &in); err != nil {
		return in, fmt.Errorf("decode: %w", err)
	}
	in.Service = w.service
	in.ID = strings.TrimPrefix(key, w.prefix)
	return in, in.Validate()
}

// deliver calls fn with the current set unless it equals the last one given.
func (w *watcher) deliver() {
	set := make([]discovery.Instance, 0, len(w.byKey))
	for _, in := range w.byKey {
		set = append(set, in)
	}
	discovery.SortByID(set)
	if w.last != nil && discovery.EqualSets(set, w.last) {
		return
	}
	// fn owns set, so keep a copy to compare against.
	w.last = append(make([]discovery.Instance, 0, len(set)), set...)
	w.fn(set)
}
