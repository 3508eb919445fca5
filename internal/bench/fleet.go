package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/protocol"
)

// fleet is a run's client connections, one client.Client each.
type fleet struct {
	// Immutable once open returns.
	clients []*client.Client // by index; nil where opening failed
	opened  int
	failed  int
	fails   *tally // why opening failed

	dropped atomic.Int64 // connections lost after opening
	drops   *tally       // why
}

// setupFunc readies client i once it is connected (subscribes it, say). Its error
// counts as a failure to open.
type setupFunc func(ctx context.Context, i int, c *client.Client) error

// openFleet opens s.Conns clients, DialConcurrency at a time, each bound to its
// source address, and runs setup on each. onDrop is called (on the client's
// reader goroutine) when client i loses its connection after that.
func openFleet(ctx context.Context, s *settings, log *slog.Logger, setup setupFunc, onDrop func(i int)) *fleet {
	f := &fleet{clients: make([]*client.Client, s.Conns), fails: newTally(), drops: newTally()}
	var next, done, failed atomic.Int64
	started := time.Now()
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
	stopProgress := make(chan struct{})
	go func() {
		for {
			select {
			case <-progress.C:
				log.Info("bench: opening connections", "opened", done.Load()-failed.Load(),
					"failed", failed.Load(), "of", s.Conns, "elapsed", time.Since(started).Round(time.Millisecond))
			case <-stopProgress:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range min(s.DialConcurrency, s.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= s.Conns || ctx.Err() != nil {
					return
				}
				c, err := f.open(ctx, s, i, setup, onDrop)
				if err != nil {
					failed.Add(1)
					f.fails.add(errKey(err))
				} else {
					f.clients[i] = c
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	for _, c := range f.clients {
		if c != nil {
			f.opened++
		}
	}
	f.failed = s.Conns - f.opened
	if skipped := s.Conns - int(done.Load()); skipped > 0 {
		f.fails.addN("not attempted: run cancelled", uint64(skipped))
	}
	log.Info("bench: connections open", "opened", f.opened, "failed", f.failed,
		"took", time.Since(started).Round(time.Millisecond))
	return f
}

func (f *fleet) open(ctx context.Context, s *settings, i int, setup setupFunc, onDrop func(int)) (*client.Client, error) {
	cfg := client.Config{
		URL:         s.URL,
		Codec:       s.Codec,
		User:        fmt.Sprintf("bench-%d", i),
		DialTimeout: 10 * time.Second,
		// A subscriber at full speed is sent dozens of frames per write; a
		// buffer that takes them all in one read halves its system calls.
		ReadBufferSize: readBuffer(s.Mode),
		// The subscribers read a timestamp out of each payload and keep nothing.
		BorrowData: true,
		// A measurement counts each connection once: one that drops is reported
		// as dropped rather than quietly replaced, and its lost messages as lost.
		MaxRetries: -1,
		OnDisconnect: func(err error) {
			f.dropped.Add(1)
			f.drops.add(errKey(err))
			if onDrop != nil {
				onDrop(i)
			}
		},
	}
	if len(s.sources) > 0 {
		cfg.LocalAddr = s.sources[min(i/s.PerSource, len(s.sources)-1)]
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if setup != nil {
		if err := setup(ctx, i, c); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// close closes every client, many at a time: each waits for its reader goroutine.
func (f *fleet) close() {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(f.clients) {
					return
				}
				if c := f.clients[i]; c != nil {
					c.Close()
				}
			}
		})
	}
	wg.Wait()
}

// tally counts occurrences by reason.
type tally struct {
	mu sync.Mutex
	m  map[string]uint64 // Guarded by mu.
}

func newTally() *tally { return &tally{m: make(map[string]uint64)} }

func (t *tally) add(key string) { t.addN(key, 1) }

func (t *tally) addN(key string, n uint64) {
	t.mu.Lock()
	t.m[key] += n
	t.mu.Unlock()
}

func (t *tally) snapshot() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

func (t *tally) total() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n uint64
	for _, v := range t.m {
		n += v
	}
	return n
}

// errKey names an error's kind without the addresses and ports that would make
// every occurrence distinct: the wire code for Herald's errors, the errno for
// system calls.
func errKey(err error) string {
	var perr *protocol.Error
	var errno syscall.Errno
	var nerr net.Error
	switch {
	case errors.As(err, &perr):
		return fmt.Sprintf("%d %s", uint32(perr.Code), perr.Code)
	case errors.Is(err, client.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, client.ErrHeartbeatTimeout):
		return "heartbeat timeout"
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return "connection closed"
	}
	s := err.Error()
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

// sortedKeys returns m's keys by descending count, for printing.
func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if m[keys[a]] != m[keys[b]] {
			return m[keys[a]] > m[keys[b]]
		}
		return keys[a] < keys[b]
	})
	return keys
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// readBuffer is each connection's read buffer: 16 KiB for fanout, the client's
// default for the modes that receive little.
func readBuffer(m Mode) int {
	if m == ModeFanout {
		return 16 << 10
	}
	return 0
}
