package bench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldgg/herald/client"
)

// runIdle opens the connections, subscribes each to one of the topics, holds
// them for the warmup and the duration, and reports the node's memory per
// connection and its CPU while they sit idle.
//
// Memory is a difference of two samples, before opening and after holding, each
// taken right after a forced GC, so that garbage made by the handshakes does not
// count; RSS still counts pages the Go runtime has not returned to the OS, which
// is what an operator pays for. Run it against a fresh node: one that held more
// connections before keeps their pages.
func runIdle(ctx context.Context, s *settings, a *admin, log *slog.Logger, r *Report) error {
	x := &IdleReport{}
	r.Idle = x
	topics := topicNames(s.Topics)
	x.GCForced = a.collectGarbage(ctx)
	before := takeSample(ctx, a, log)

	opening := time.Now()
	f := openFleet(ctx, s, log, func(ctx context.Context, i int, c *client.Client) error {
		_, err := c.Subscribe(ctx, topics[i%len(topics)], func(client.Message) {})
		return err
	}, nil)
	defer f.close()
	x.OpenTime = time.Since(opening).Seconds()
	log.Info("bench: holding connections", "opened", f.opened, "warmup", s.Warmup, "duration", s.Duration)

	// The warmup lets the node finish the handshakes' work (buffers returned to
	// pools, timers settled) before idle CPU is measured.
	sleep(ctx, s.Warmup)
	start := takeSample(ctx, a, log)
	stopCPU := startCPUProfile(ctx, s, a, log)
	sleep(ctx, s.Duration)
	end := takeSample(ctx, a, log)
	stopCPU()
	r.window(start, end)
	r.Server.Before = before.stats

	// Memory after the hold, collected like the baseline.
	if x.GCForced {
		x.GCForced = a.collectGarbage(ctx)
	}
	mem, err := a.stats(ctx)
	if err != nil {
		return err
	}
	r.Server.After = mem
	saveProfiles(ctx, s, a, log)
	r.recordFleet(f)

	b := before.stats
	x.Sessions = mem.Sessions - b.Sessions
	x.RSSDelta = int64(mem.RSSBytes) - int64(b.RSSBytes)
	x.HeapDelta = int64(mem.HeapBytes) - int64(b.HeapBytes)
	x.GoroutinesDelta = mem.Goroutines - b.Goroutines
	// Per connection the node still holds: a connection it closed during the run
	// (reported as dropped) no longer costs it memory.
	held := float64(f.opened)
	if x.Sessions > 0 {
		held = float64(x.Sessions)
	}
	if n := held; n > 0 {
		x.RSSPerConn = float64(x.RSSDelta) / n
		x.HeapPerConn = float64(x.HeapDelta) / n
		x.GoroutinesPerConn = float64(x.GoroutinesDelta) / n
	}
	if alive := int64(f.opened) - f.dropped.Load(); x.Sessions != alive {
		r.note("the node counts %d more sessions than before, the bench holds %d: another client came or went", x.Sessions, alive)
	}
	return nil
}

// topicNames returns n topic names unique to this run, so that no earlier run's
// history or another client's message mixes in.
func topicNames(n int) []string {
	run := time.Now().UnixNano() % 1e9
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("bench.%d.%d", run, i)
	}
	return names
}
