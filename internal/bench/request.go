package bench

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/protocol"
)

// runRequest has every connection call s.Route in a loop, closed loop (the next
// call when the answer came) or paced at s.Rate/Conns per connection, and
// reports answers per second, latency of the successful ones, and every failure
// by its code. A route that does not exist is measured like any other: the run
// reports the "not found" answers.
func runRequest(ctx context.Context, s *settings, a *admin, log *slog.Logger, r *Report) error {
	x := &RequestReport{Route: s.Route, TargetRate: s.Rate}
	r.Request = x
	f := openFleet(ctx, s, log, nil, nil)
	defer f.close()
	x.Clients = f.opened
	if f.opened == 0 {
		r.recordFleet(f)
		return errors.New("bench: no client connected")
	}

	rq := &requester{s: s, errs: newTally()}
	loopCtx, stopLoops := context.WithCancel(ctx)
	defer stopLoops()
	var wg sync.WaitGroup
	payload := make([]byte, s.Size)
	fillPayload(payload, 0, 0)
	for i, c := range f.clients {
		if c != nil {
			wg.Go(func() { rq.loop(loopCtx, i, c, payload) })
		}
	}
	log.Info("bench: requesting", "clients", f.opened, "route", s.Route, "rate", s.Rate, "warmup", s.Warmup)
	sleep(ctx, s.Warmup)

	rq.hist.reset()
	rq.measuring.Store(true)
	start := takeSample(ctx, a, log)
	stopCPU := startCPUProfile(ctx, s, a, log)
	sleep(ctx, s.Duration)
	rq.measuring.Store(false)
	end := takeSample(ctx, a, log)
	stopLoops()
	wg.Wait()
	r.window(start, end)
	stopCPU()
	saveProfiles(ctx, s, a, log)
	r.recordFleet(f)

	x.Sent, x.OK = rq.sent.Load(), rq.ok.Load()
	x.Failed = rq.errs.total()
	x.Errors = rq.errs.snapshot()
	x.OKPerSec = float64(x.OK) / end.at.Sub(start.at).Seconds()
	x.Latency = rq.hist.snapshot()
	if x.OK == 0 && x.Failed > 0 {
		r.note("no request succeeded: see the failures by code (is route %q served?)", s.Route)
	}
	return nil
}

type requester struct {
	s         *settings
	hist      hist
	measuring atomic.Bool
	sent, ok  atomic.Uint64 // over the measured part
	errs      *tally        // over the measured part
}

// rateLimitPause is how long a client waits after the node said it sends too
// fast: long enough to earn a token back at the default 100 frames per second.
const rateLimitPause = 10 * time.Millisecond

func (rq *requester) loop(ctx context.Context, i int, c *client.Client, payload []byte) {
	var interval time.Duration
	if rq.s.Rate > 0 {
		perConn := rq.s.Rate / float64(rq.s.Conns)
		interval = time.Duration(math.Max(1, float64(time.Second)/perConn))
	}
	next := time.Now()
	for ctx.Err() == nil {
		if interval > 0 {
			if !sleep(ctx, time.Until(next)) {
				return
			}
			next = next.Add(interval)
		}
		measured := rq.measuring.Load()
		t0 := time.Now()
		_, err := c.Request(ctx, rq.s.Route, payload, nil)
		d := time.Since(t0)
		if ctx.Err() != nil {
			return // cut off by the end of the run: neither an answer nor a failure
		}
		if measured {
			rq.sent.Add(1)
			if err == nil {
				rq.ok.Add(1)
				rq.hist.record(i, d)
			} else {
				rq.errs.add(errKey(err))
			}
		}
		var perr *protocol.Error
		switch {
		case err == nil:
		case errors.As(err, &perr) && perr.Code == protocol.CodeRateLimited:
			sleep(ctx, rateLimitPause)
		case errors.Is(err, client.ErrClosed), errors.Is(err, client.ErrGaveUp), errors.Is(err, client.ErrDisconnected):
			return // the connection is gone: the fleet reports the drop
		}
	}
}
