package broker

import "sync/atomic"

// Counters are a clustered broker's lifetime counters, which the node exports
// as metrics (docs/operations.md). A broker reports 0 for what it does not
// count.
type Counters struct {
	// Reconnects counts connections to the broker made after the first.
	Reconnects uint64
	// ProbeFailures counts liveness pings that did not come back in time
	// (Redis: each one remakes the Pub/Sub connection).
	ProbeFailures uint64
	// Filled counts publications delivered from history because they were
	// missed live.
	Filled uint64
	// Jumps counts times delivery skipped publications history no longer held.
	Jumps uint64
	// Rollbacks counts history reads that found a topic behind what this node
	// had delivered, in the same epoch: the broker lost acknowledged
	// publications, and their offsets will be given again (Redis).
	Rollbacks uint64
	// Conflicts counts publishes retried because another node published to
	// the topic first (NATS).
	Conflicts uint64
}

// Counted is a broker that keeps Counters.
type Counted interface {
	Stats() Counters
}

// LiveCounters are Counters as a broker keeps them while it runs.
type LiveCounters struct {
	Reconnects, ProbeFailures, Filled, Jumps, Rollbacks, Conflicts atomic.Uint64
}

// Snapshot reads the counters.
func (c *LiveCounters) Snapshot() Counters {
	return Counters{
		Reconnects:    c.Reconnects.Load(),
		ProbeFailures: c.ProbeFailures.Load(),
		Filled:        c.Filled.Load(),
		Jumps:         c.Jumps.Load(),
		Rollbacks:     c.Rollbacks.Load(),
		Conflicts:     c.Conflicts.Load(),
	}
}
