// Package clustertest holds Herald's cluster failure tests; it has no code of
// its own. Each test runs three real nodes on 127.0.0.11, 127.0.0.12 and
// 127.0.0.13 sharing a real redis-server or an embedded NATS server, 300
// subscribers made with the client SDK (WebSocket and raw TCP, JSON and
// Protobuf, spread over the nodes, each knowing every node through
// client.Config.URLs), ten topics, and a publisher at 500 messages a second
// through the nodes' admin APIs. After a steady start it injects one fault —
// Redis killed and restarted with and without persistence, Redis frozen with
// SIGSTOP, the Pub/Sub links killed, NATS restarted, a node killed with SIGKILL
// — heals it, drains, and checks the run against what Herald promises:
//
//   - every subscription received, within each epoch, a gap-free and
//     duplicate-free sequence of offsets, unless it was told otherwise: an
//     OnUnrecovered notice, or a new epoch beginning at offset 1;
//   - every publish that returned success was delivered to every subscriber
//     of its topic, at the position it returned, unless one of those notices
//     covered it;
//   - no two successful publishes share a position.
//
// A publish during an outage must fail with an error the caller sees: one
// that returned success and was then lost is a missing delivery above. A
// publish that returned an error but was delivered anyway (its reply was lost)
// is allowed, and counted.
//
// Each test logs its figures (publishes, failures, deliveries, notices, time to
// recover); docs/operations.md ("Cluster failure tests") summarises what they
// show an operator. The nodes run in the test process, except for the node
// kill, which needs real processes and builds cmd/herald.
package clustertest
