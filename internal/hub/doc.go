// Package hub is the node-local fan-out: it holds every session of the node, split
// into shards, and delivers topic messages, broadcasts and pushes to them.
//
// # Model
//
// Sessions are partitioned over shards by their number. Each shard has one worker
// goroutine that owns its sessions' queues, its topic index (topic → its subscribed
// sessions) and its user index; nothing else touches them, so the hot path takes no
// lock per recipient. A message is encoded once per wire variant (session.Frame) and
// handed to every shard; a shard appends the shared frame to each matching session's
// queue and, when its inbox is empty, flushes each touched session once with one
// write. Under light load every message goes out at once; under heavy load many
// messages share one system call.
//
// # Subscriptions and recovery
//
// Subscribing is two steps so that a client never sees a gap or a duplicate: Subscribe
// registers the subscription in the recovering state (live messages are held back),
// the caller reads the broker's history, and CompleteSubscribe queues the
// acknowledgement, the replayed history, then the held live messages newer than it.
// Duplicates are dropped by offset. A publication that skips offsets (the broker's
// history no longer held what it missed) is not delivered as if nothing happened:
// the subscriber is disconnected with DisconnectInsufficientState, gets what came
// before the gap first, resubscribes from there and is told that recovery failed.
// Lossy topics take such gaps like the messages they drop.
//
// # Maps and regions
//
// Each configured map has a spatial grid (package aoi) owned by one worker
// goroutine of its own, not by the shards. A region broadcast, a move and a
// removal are items in the map's inbox; the worker queries or updates the grid
// and hands each recipient's frame to the recipient's shard, which owns the
// queue. No lock is held across the fan-out, and one message is still one
// shared frame, encoded at most once per wire variant.
//
// The alternative, a grid per map in every shard holding that shard's
// sessions, saves the hand-off for region broadcasts but makes every move a
// job for every shard, since any shard may hold a neighbour: with interest on,
// each other shard runs two circle queries per move. BenchmarkGridOwnership
// measured, per move in a world of 10,000 entities on 10,000 × 10,000 at
// radius 100, 0.47 µs for the owner against 0.65 µs with 2 shards, 1.1 µs with
// 8 and 4.3 to 5.4 µs with 32, so the per-shard layout loses on 2 cores
// already and grows with the machine. The owner's price is one goroutine per
// busy map: BenchmarkWorld took 100,000 moves/s through one map, with their
// enter, leave and update frames, on about 0.55 of a core, and up to ~500,000
// moves/s with both cores (docs/benchmarks.md).
//
// A session's position (session.Map, guarded by its PlaceMu) is changed under
// that lock by whoever moves it: its connection, the server API, its removal.
// The lock orders a session's items into its maps' inboxes, so a map never
// sees a move after the removal, and the grid follows the last move made.
// Events of one map reach a session in the order the map made them; events of
// different maps are not ordered with each other.
//
// # Slow consumers
//
// The queue bound is applied at enqueue (session.Enqueue). A client past it is
// disconnected with DisconnectSlowConsumer, or loses its oldest frames on topics
// configured as lossy; a backlog that does not drain within the write timeout counts
// the same. Neither ever blocks a shard.
package hub
