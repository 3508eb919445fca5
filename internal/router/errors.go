package router

import (
	"errors"
	"fmt"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/protocol"
)

// Sentinel errors: every error Request, Notify and SessionEvent return is an
// *Error wrapping exactly one of them. Test with errors.Is; errors.As to
// *protocol.Error gives the code and reason to send the client.
var (
	// ErrNoRoute: the route is malformed or names a service not configured.
	// Code: not found.
	ErrNoRoute = errors.New("router: no such route")
	// ErrUnavailable: no instance could be reached, or the one that took the
	// request failed at the transport level. Code: unavailable.
	ErrUnavailable = errors.New("router: service unavailable")
	// ErrCircuitOpen: every instance's circuit breaker is open.
	// Code: circuit open.
	ErrCircuitOpen = errors.New("router: circuit open")
	// ErrOverloaded: every instance is at its concurrency limit, or the
	// instance said it is overloaded. Code: overloaded.
	ErrOverloaded = errors.New("router: overloaded")
	// ErrTimeout: no reply within the route's timeout. Code: timeout.
	ErrTimeout = errors.New("router: timeout")
	// ErrCanceled: the caller's context was cancelled first. Code: unavailable
	// (the client is normally gone by then).
	ErrCanceled = errors.New("router: canceled")
	// ErrService: the service answered with an error, or with something that
	// is not an answer. Code: the service's own, or service error.
	ErrService = errors.New("router: service error")
	// ErrBadRequest: the request cannot be sent as given (for example metadata
	// that is not a valid HTTP header in proxy mode). Code: bad request.
	ErrBadRequest = errors.New("router: bad request")
	// ErrClosed: the Router is closed. Code: unavailable.
	ErrClosed = errors.New("router: closed")
)

// Error is a failed call: the code and reason the client receives, and the
// cause for logs.
type Error struct {
	// Code and Reason are what the client sees in its error frame.
	Code   protocol.Code
	Reason string
	// Service and Instance say where it failed; Instance is empty when no
	// instance was called.
	Service, Instance string

	// err wraps one sentinel and, when there is one, the underlying error.
	err error
	// How the breaker counts it, whether another instance may be tried for an
	// idempotent route, and whether it is known that the instance never
	// received the call (so any route may try another).
	outcome   breaker.Outcome
	retryable bool
	unsent    bool
}

func (e *Error) Error() string {
	where := e.Service
	if e.Instance != "" {
		where += "/" + e.Instance
	}
	return fmt.Sprintf("%v (%s, code %d): %s", e.err, where, uint32(e.Code), e.Reason)
}

// Unwrap returns the sentinel (and cause) for errors.Is.
func (e *Error) Unwrap() error { return e.err }

// As lets errors.As fill a *protocol.Error, which is what the gateway turns
// into an error frame.
func (e *Error) As(target any) bool {
	if p, ok := target.(**protocol.Error); ok {
		*p = &protocol.Error{Code: e.Code, Reason: e.Reason}
		return true
	}
	return false
}

// newError builds an Error. cause may be nil.
func newError(sentinel error, code protocol.Code, service, reason string, cause error) *Error {
	err := sentinel
	if cause != nil {
		err = fmt.Errorf("%w: %w", sentinel, cause)
	}
	return &Error{Code: code, Reason: reason, Service: service, err: err}
}

// maxReasonLen bounds reasons copied from a service into a client's frame.
const maxReasonLen = 256

func truncate(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	// Cut on a rune boundary so the frame stays valid UTF-8 for JSON clients.
	cut := maxReasonLen
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

// serviceCode is the code a client sees for a code a service chose: error
// frame codes pass through, anything else is reported as a service error.
func serviceCode(c uint32) protocol.Code {
	if c >= 100 && c <= 1999 {
		return protocol.Code(c)
	}
	return protocol.CodeServiceError
}

// classify is the breaker's view of an attempt's error.
func classify(err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	var e *Error
	if errors.As(err, &e) {
		return e.outcome
	}
	return breaker.Failure
}
