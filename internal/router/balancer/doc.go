// Package balancer picks which instance of a game service takes a request.
//
// # Model
//
// A Balancer holds an immutable Snapshot of a service's instances and one policy
// built over them. Discovery delivers the full instance set each time it changes;
// the router calls Update, which builds a new Snapshot (ring, tables, sequences)
// and swaps it in with one atomic store. A request loads the current Snapshot
// once and picks from it, as many times as it needs to, so every attempt of one
// request indexes the same instance list even if a swap happens meanwhile.
//
// Policies (Config.Policy):
//
//   - round_robin: instances in turn, each Weight times per cycle, interleaved
//     (smooth weighted round robin, precomputed at Update).
//   - least_in_flight: the instance with the fewest requests in flight relative
//     to its Weight; ties go round robin.
//   - hash: consistent hashing of the request key (the user id) on a ring with
//     VirtualNodes points per unit of Weight, so a player keeps reaching the same
//     instance while it lives. A point's place depends only on its instance's ID,
//     so when an instance leaves only its players move, and when one joins only
//     the players it takes move.
//   - weighted: shares of traffic per value of an instance tag, for example
//     {"canary": 5} on tag "track" sends 5% to instances tagged track=canary and
//     the rest to the others. Picks follow a golden-ratio sequence rather than a
//     random draw, so the split holds within a fraction of a percent after a few
//     hundred picks instead of drifting like a coin.
//
// An instance that is not Ready (for the router: its circuit breaker is open)
// or that the request already tried is skipped:
// round robin and weighted move on as if it were absent, hash walks on along the
// ring, so the skipped instance's players land on its ring neighbours while every
// other player stays put.
//
// # Concurrency
//
// Pick never blocks, takes no lock and does not allocate: it reads the immutable
// Snapshot, at most one shared atomic counter, and each Endpoint's Ready and
// InFlight, which must themselves be lock-free. Update is called by one goroutine
// at a time (the router's watch for the service). Snapshots are never modified
// after they are published.
package balancer
