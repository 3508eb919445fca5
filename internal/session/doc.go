// Package session holds one authenticated player connection's state: identity,
// codec, liveness, and the bounded out queue with its slow-consumer policy.
//
// # Ownership
//
// A Session belongs to exactly one hub shard. Its queue and subscriptions are read
// and written only by that shard's worker goroutine, so they need no lock. The
// fields marked atomic (last activity, closed) are touched by the connection's
// reader and by the shard.
//
// # Frames
//
// A Frame is one outbound message, encoded lazily once per (transport, codec)
// variant and then shared, read-only, by every queue it is appended to. The wire
// bytes are what the transport writes verbatim.
package session
