// Package bench is the `herald bench` load generator: it drives a running node
// through its client port with the client SDK, one client.Client per connection,
// and reads the node's own figures (RSS, Go heap, goroutines, CPU time,
// deliveries) from its admin API, so that a run reports what the load cost the
// node rather than what the generator saw alone.
//
// Run performs one run in one of three modes: idle (connections that subscribe
// and sit), fanout (subscribers, and publishes through the admin API at a rate or
// closed loop) and request (calls to a route). Every run opens its connections,
// runs the load for a warmup, measures for a duration between two samples of the
// node's stats, the generator's CPU and the machine's (/proc/stat), and then
// closes everything it started before returning: no goroutine of a run outlives
// Run.
//
// Concurrency: each client's handlers run on its own reader goroutine, so the
// fan-out receive path records into per-subscriber atomics, counters spread over
// cache lines and a sharded histogram, never a shared lock: at a million
// deliveries per second in the same process as thousands of readers, a lock would
// measure itself. The generator shares the machine with the node when both run on
// one box; its own CPU (and, with ProfileDir, its CPU profile) is reported beside
// the node's so that the reader can tell which one gave out.
package bench
