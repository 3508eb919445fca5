// Package breaker is the circuit breaker Herald keeps for each instance of a game
// service, so that an instance that stopped answering stops receiving players'
// requests until it has had time to recover.
//
// # Model
//
// A Breaker is closed while its instance is healthy: every call goes through and
// its outcome is counted in a rolling window (Config.Window, in ten buckets). It
// opens when either ConsecutiveFailures calls in a row failed, which catches an
// instance that died outright even under light traffic, or, once the window holds
// MinRequests finished calls, at least FailureRatio of them failed, which catches
// an instance failing some of the time under load. While open it rejects calls at
// once with ErrOpen. After Cooldown it is half-open: Probes calls go through and
// the rest are still rejected; Probes successes in a row close it, one failure
// opens it again for another Cooldown.
//
// What counts as a failure is the caller's decision (Hooks.Classify): the router
// counts transport errors, timeouts and malformed answers, ignores calls its own
// client abandoned, and counts a service's deliberate error reply as a success,
// because an instance that answers "no such room" is healthy.
//
// The state machine is github.com/sony/gobreaker/v2; this package adds the
// configuration Herald documents, outcome classification, and a lock-free Ready
// for balancers, which must be able to skip an open instance without taking a lock.
//
// # Concurrency
//
// Every method is safe for concurrent use. Ready never blocks. Do takes the
// breaker's mutex briefly before and after the call, never during it.
// Hooks.OnStateChange runs with that mutex held, which is what reports
// transitions in the order they happened; it must return quickly and must not
// call the Breaker.
package breaker
