// Package router sends players' requests to game services: a request's route,
// "service.method", names a configured service; the router picks one of its
// instances, calls it, and returns exactly one answer, the reply data or an
// error with a code the client can act on.
//
// # Model
//
// Each configured service has a balancer (package router/balancer) over the
// instances discovery reports for it. One goroutine per service watches
// discovery and, on every change, builds a new snapshot and swaps it in;
// instances that stay keep their connection and breaker, instances that leave
// are retired and their connection closes once the calls in flight on it end.
// Requests never wait for discovery or for each other: they load the current
// snapshot and pick from it.
//
// Each instance has one multiplexed gRPC connection (or, in proxy mode, its own
// HTTP keep-alive pool), a circuit breaker (package breaker) and a count of
// calls in flight with a cap. A request:
//
//  1. picks an instance, skipping those whose breaker is open;
//  2. admits itself to the instance's count; an instance at its cap sends the
//     request to another one, except under the hash policy, where the request
//     is answered "overloaded" instead: a sticky player's instance holds its
//     state, and a busy instance is no reason to break that (a dead one is);
//  3. calls through the breaker, within the route's timeout (which covers the
//     whole request, retries included);
//  4. on failure, picks another instance if the call never reached the
//     instance (breaker rejected it, connection known down, dial failed), or
//     if the route is idempotent and the failure is one another instance
//     might not have (unavailable, overloaded, failed): up to Retries more.
//
// Everything else is the answer. A gRPC connection's state is watched, and a
// connection that failed keeps reconnecting in the background; picking an
// instance whose connection is down counts as a failure against its breaker
// without sending anything, which is how an instance whose process died while
// still registered gets its circuit opened, and how it is probed after the
// cooldown.
//
// # Errors
//
// Every error is an *Error wrapping one sentinel (ErrNoRoute, ErrTimeout,
// ErrUnavailable, ErrCircuitOpen, ErrOverloaded, ErrService, ErrBadRequest,
// ErrCanceled, ErrClosed) and carrying the code and reason for the client;
// errors.As(err, &*protocol.Error) yields them. A service's own error reply
// (ReplyMsg.code, or X-Herald-Code in proxy mode) reaches the client with the
// service's code when it is an error frame code (100–1999). gRPC statuses and
// HTTP statuses map as follows:
//
//	DeadlineExceeded, HTTP 408/504        timeout        counts against the instance
//	Unavailable, Unimplemented, HTTP 502/503, transport errors
//	                                      unavailable    counts, retryable
//	ResourceExhausted                     overloaded     counts, retryable
//	Internal, Unknown, DataLoss (undecodable replies included), other HTTP 5xx
//	                                      service error  counts, retryable
//	InvalidArgument, HTTP 400             bad request    an answer
//	NotFound, HTTP 404                    not found      an answer
//	PermissionDenied, Unauthenticated, HTTP 401/403
//	                                      permission denied  an answer
//	HTTP 429                              rate limited   an answer
//	anything else                         service error  an answer
//
// "Counts" means the breaker counts it as a failure; calls the caller
// abandoned count neither way.
//
// # Concurrency
//
// Request, Notify, SessionEvent, Instances and Ready are safe for concurrent
// use from any goroutine. They take no lock on the way to an instance: the
// snapshot is read atomically, admission is an atomic compare-and-swap, and a
// breaker takes its own short mutex before and after the call. The Router owns
// its goroutines (one watch per service, one connection watcher per gRPC
// instance); Close cancels them and waits.
package router
