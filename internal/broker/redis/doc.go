// Package redis is the broker.Broker for a cluster of Herald nodes sharing one
// Redis (standalone or behind Sentinel; Redis 6.2 or newer, spoken in RESP3).
//
// # Streams, offsets and epochs
//
// A topic's state is a hash (last offset and epoch) and a stream capped at
// HistorySize entries, whose entry IDs are "<offset>-0". One Lua script does a
// whole publish: it takes the next offset with HINCRBY, XADDs the entry with
// MAXLEN, refreshes both keys' TTL and PUBLISHes the publication on the topic's
// channel. Redis runs scripts one at a time, so no two publications share an
// offset, offsets on a channel arrive in order, and a publication that reached
// any subscriber is in history. Publishes are not serialized by Herald:
// rueidis pipelines concurrent calls on one connection.
//
// The epoch lives in the hash. Whenever the script finds the hash gone (the
// topic was never published to, its TTL ran out, or Redis restarted without
// persistence or was flushed) or finds the stream gone while the offset
// survived (eviction), it starts a new random epoch at offset 0 and drops what
// is left of the stream. A client holding a position in the old epoch is then
// told recovery failed instead of silently missing messages. With appendonly
// persistence a restart keeps both keys, so the epoch and offsets carry on.
// With RDB snapshots only, a restart can roll the offset back under the same
// epoch: acknowledged publications are lost, their offsets are given again
// to others, and clients holding the old ones skip those as repeats. So can
// appendfsync everysec, even when only the process dies: while a background
// fsync is slow Redis postpones writing the file, for up to two seconds, and
// replies meanwhile (the cluster failure test TestRedisRestart/appendonly
// saw one such loss in about thirty kills on a busy disk). Run Redis with
// appendonly and appendfsync always, or with no persistence at all, when
// recovery must be exact. A node that notices a rollback on a stream read
// logs it and counts it in Stats.Rollbacks; it cannot notice every one.
//
// # Failed publishes
//
// Publish fails with broker.ErrUnavailable when Redis cannot be reached or does
// not answer before the call's deadline (the caller's, capped at
// RequestTimeout). The script carries that deadline, less a margin for the
// reply, and refuses to run after it by Redis's clock, so a publish that
// waited behind a stalled Redis does not take effect after its caller was told
// it failed. What remains ambiguous is a reply lost on the way back after the
// script ran, or clocks skewed by more than the margin.
//
// # Live delivery and gaps
//
// Each node keeps one dedicated Pub/Sub connection. It subscribes the control
// channel (Broadcast), its own node channel (SendNode), a channel private to
// the broker for probes, and a topic's channel only between Subscribe and
// Unsubscribe. For each subscribed topic the broker remembers the position of
// the last publication it handed to the handler and delivers a publication
// only if it is the next one:
//
//   - an offset already delivered is dropped;
//   - the offset after the last is delivered;
//   - a later offset, or a new epoch not starting at 1, means something was
//     missed: the publication waits (bounded) and the topic's stream is read
//     with XRANGE from the last delivered offset (all of it when the epoch
//     changed), the missed publications are delivered in order, then the
//     waiting ones. The hub therefore sees every topic's publications without
//     gaps or duplicates, and sees a new epoch begin when history was lost.
//
// Subscribe reads the topic's position right after SUBSCRIBE, on the
// Pub/Sub connection itself: Redis answers in order, so the position covers
// exactly the publications that came before it. Every publication after that
// baseline is delivered; one published concurrently with Subscribe may be
// delivered or not, and the gateway's History call covers it either way.
//
// Redis can keep a Pub/Sub connection that TCP and Redis both think is alive
// while nothing is delivered. So every ProbeInterval the broker publishes a
// ping to its probe channel through the command connection and waits
// ProbeTimeout for it on the Pub/Sub connection. When the probe fails or the
// connection drops, the broker closes it, reconnects with jittered backoff,
// resubscribes every topic and reads every topic's stream from its last
// delivered position, delivering what was published in between. A topic that
// missed more than HistorySize publications skips the ones history no longer
// holds (counted in Stats.Jumps and logged); the hub sees the gap and
// disconnects the topic's subscribers, which resubscribe and are told that
// recovery failed.
//
// # Presence
//
// The broker also implements broker.Presence (keys and scripts in
// presence_scripts.go). Each announcement of a node is an id — a random
// incarnation plus the node name — kept in one sorted set scored by its
// expiry in Redis's clock, so no node's clock matters. Registrations name
// the id: a user's set of ids, a topic's set of (id, user), and per id an
// index of what it registered. Reads (one script each) return only entries
// whose id is live and drop the dead ones they meet. A dead id never comes
// back: a node whose announcement lapsed, was lost with Redis's data, or
// was superseded by a new process of the same name claims a fresh id, and
// Announce reports resync. Updates are refused (ErrLapsed) by the same
// script that would apply them once their id is dead, so no write lands on
// an id that is being reaped.
//
// Nothing is refreshed per user: a node holding a million users costs one
// ZADD per heartbeat. Removing a dead id's registrations walks its index:
// every node's Announce wakes a reaper goroutine that SPOPs the index in
// batches and SREMs each entry, so several nodes share the work; Leave
// does the same for its own id before it returns.
//
// # Concurrency
//
// rueidis calls the message hook on the Pub/Sub connection's reading
// goroutine, one message at a time. One goroutine, started by Start and
// stopped by Close, owns the Pub/Sub connection: it probes, reconnects and
// reads streams; another, the presence reaper, lives as long. Every delivery
// to the handler happens with the broker's mutex held, which keeps each
// topic's publications in order and never concurrent; the handler must not
// call back into the broker. Control messages are handed over without the
// mutex, on the reading goroutine.
package redis
