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
// Duplicates are dropped by offset.
//
// # Slow consumers
//
// The queue bound is applied at enqueue (session.Enqueue). A client past it is
// disconnected with DisconnectSlowConsumer, or loses its oldest frames on topics
// configured as lossy; a backlog that does not drain within the write timeout counts
// the same. Neither ever blocks a shard.
package hub
