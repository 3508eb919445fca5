// Package nats is the broker.Broker for a cluster of Herald nodes sharing a
// NATS system with JetStream (nats-server 2.11 or newer: batched direct gets).
//
// # History: one stream, offsets by expected sequence
//
// Every topic's history lives in one JetStream stream (Config.Stream) capturing
// herald.h.<topic>, with at most HistorySize messages per subject and each
// message kept for HistoryTTL. One stream instead of one per topic keeps
// topics cheap to create and lets JetStream expire idle ones: games open and
// close many short-lived topics, and a stream is a heavyweight server object.
//
// The stream's sequence counts messages of all topics, so a topic's offset is
// written into each message's headers (Herald-Offset, Herald-Epoch) by the
// publishing node: the offset after the topic's last message, sent with
// Nats-Expected-Last-Subject-Sequence set to that message's stream sequence.
// JetStream stores it only if no other message of the topic was stored in
// between; otherwise the node rereads the topic's last message and retries.
// So no two messages of a topic share an offset and offsets grow by exactly
// one. A node serializes its own publishes per topic (striped locks) and
// remembers each topic's last message, so in the common case a publish is one
// round trip; two nodes publishing to one topic at once take turns through
// retries (Stats.Conflicts). The price is that one topic's publishes are not
// pipelined: a hot topic is bounded by one round trip per publish.
//
// # Epochs
//
// A topic's epoch is written in its messages and lives as long as they do. A
// publish that finds no message of the topic (never published, every message
// expired, the stream recreated after a server lost its storage) starts a new
// random epoch at offset 1, so a client holding a position in the old epoch is
// told recovery failed. History on a topic with no message stores a marker
// (offset 0, no data, never delivered) to fix the epoch its first publications
// will carry, so the position it returns stays valid. The stream is created
// with a random first sequence: a node that remembers a sequence of a deleted
// stream can then never pass the expected-sequence check on its successor.
//
// A server that loses only its latest writes (a machine crash before
// JetStream's periodic fsync, on a stream with one replica) rolls a topic back
// under the same epoch, and later offsets are given twice. Use three replicas,
// or sync_interval: always, where that matters.
//
// # Live delivery and gaps
//
// The stream republishes every stored message to herald.l.<topic> (RePublish),
// with its headers, in stream order; a node subscribes that core subject only
// between Subscribe and Unsubscribe. All topics' subscriptions share one
// channel drained by one delivery goroutine. For each subscribed topic the
// broker remembers the position of the last publication it handed to the
// handler and delivers a publication only if it is the next one:
//
//   - an offset already delivered is dropped;
//   - the offset after the last is delivered;
//   - a later offset, or a new epoch not starting at 1, means something was
//     missed: the publication waits (bounded) and the sync goroutine reads the
//     topic's last message from the stream leader and its retained messages
//     with one batched direct get, delivers the missed ones in order, then the
//     waiting ones.
//
// Live messages are missed when the connection drops (nats.go reconnects and
// resubscribes by itself; on reconnect every subscribed topic is read) and
// when the delivery channel is full (nats.go drops and reports a slow
// consumer; that topic is read). The hub therefore sees every topic's
// publications without gaps or duplicates, and sees a new epoch begin when
// history was lost. A topic that missed more than HistorySize publications
// skips those history no longer holds (Stats.Jumps, logged); the hub sees the
// gap and disconnects the topic's subscribers, which resubscribe and are told
// that recovery failed.
//
// Subscribe waits until the server has the subscription, then reads the
// topic's last message as the baseline: every publication after it is
// delivered. One published concurrently with Subscribe may be delivered or
// not; the gateway's History call covers it either way.
//
// # Failed publishes
//
// Publish fails with broker.ErrUnavailable when NATS cannot be reached or does
// not answer in time. Publishing while disconnected fails at once rather than
// waiting in nats.go's reconnect buffer (disabled), so it cannot take effect
// after its caller gave up. A publish whose ack was lost after the server
// stored it remains ambiguous, as with any request over a network.
//
// # Presence
//
// The broker also implements broker.Presence in three key/value buckets
// (layout in bucket.go). A node's announcement is a live record with a
// per-message TTL (whole seconds, rounded up), refreshed on condition that
// it is still the message this broker last wrote: when JetStream dropped it
// for its TTL, lost it with its store, or another process of the same name
// replaced it, the condition fails and the broker claims a new incarnation
// (resync). Registrations carry the incarnation in their key and count only
// while the live record names it, so a lapsed incarnation's registrations
// can be purged by subject filter at any time. Every Announce wakes a reaper
// goroutine that reads the nodes bucket in one isolated batch and purges
// the incarnations no live record names; Leave purges its own.
//
// Reads are batched direct gets (any replica may answer, so a read can lag
// by a replication round); UserNodes and TopicUsers send theirs and the live
// records' read together. Updates are pipelined publishes. JetStream cannot
// refuse an update whose incarnation just died, so the broker refuses them
// itself (ErrLapsed) once the live record's TTL may have run out by its own
// clock.
//
// # Concurrency
//
// Start starts three goroutines, stopped by Close: delivery (live messages),
// sync (history reads after gaps and reconnects) and the presence reaper. Every delivery to the
// handler happens with the broker's mutex held, which keeps each topic's
// publications in order and never concurrent; the handler must not call back
// into the broker. Control messages are handed over on nats.go's subscription
// goroutines without the mutex.
package nats
