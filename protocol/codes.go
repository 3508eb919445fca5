package protocol

import "fmt"

// Code is a numeric error or disconnect code. Its range tells a client what to do:
//
//	  100–1999  error frame codes: the request failed, the connection stays open
//	3000–3499  disconnect, reconnect allowed (with backoff)
//	3500–3999  disconnect, terminal: reconnecting as-is will fail again
//
// Disconnect codes double as WebSocket close codes (the 3000–4999 range is the
// application's), so browsers see the same number in CloseEvent.code.
type Code uint32

// Error frame codes.
const (
	CodeBadRequest        Code = 100 // the frame could not be decoded or misses a required field
	CodeUnknownOp         Code = 101 // the op is not one a client may send
	CodeNotConnected      Code = 102 // the first frame must be connect
	CodeAlreadyConnected  Code = 103 // connect sent twice
	CodePermissionDenied  Code = 104 // e.g. pub to a topic clients may not publish to
	CodeBadTopic          Code = 105 // empty, too long or malformed topic name
	CodeAlreadySubscribed Code = 106
	CodeNotSubscribed     Code = 107
	CodeLimitExceeded     Code = 108 // e.g. too many subscriptions for one session
	CodeRateLimited       Code = 109 // too many messages per second from this session
	CodeNotFound          Code = 110 // unknown route, map, user or session
	CodeTimeout           Code = 111 // the game service did not answer within the route's timeout
	CodeUnavailable       Code = 112 // no healthy instance of the service, or the broker is down
	CodeCircuitOpen       Code = 113 // the service's circuit breaker is open
	CodeBadPosition       Code = 114 // position outside the map, or a bad radius
	CodeInternal          Code = 115 // Herald failed; the request may be retried
	CodeServiceError      Code = 116 // the game service answered with an error of its own
	// CodeOverloaded: every instance of the game service already has as many
	// requests in flight from this node as its concurrency limit allows. Unlike
	// CodeRateLimited it is not the client's doing; retry after a backoff.
	CodeOverloaded Code = 117
)

// Error frame codes 1000–1999 are left to game services for errors of their own:
// a service's reply carrying one reaches the client unchanged (see backend.proto).

// Disconnect codes: reconnect allowed.
const (
	DisconnectShutdown          Code = 3000 // the node is draining; connect again (to another node)
	DisconnectHeartbeat         Code = 3001 // nothing arrived within 1.5 × the heartbeat interval
	DisconnectSlowConsumer      Code = 3002 // the client did not read fast enough; its queue overflowed
	DisconnectInternal          Code = 3003
	DisconnectConnectTimeout    Code = 3004 // no connect frame within the connect deadline
	DisconnectTooManyConns      Code = 3005 // connection limit reached (per node or per address)
	DisconnectInsufficientState Code = 3006 // the server lost track of this session; resubscribe
	DisconnectRateLimited       Code = 3007 // far over the message rate limit
)

// Disconnect codes: terminal.
const (
	DisconnectBadRequest    Code = 3500 // a protocol violation the connection cannot recover from
	DisconnectFrameTooLarge Code = 3501 // a frame over the size limit
	DisconnectInvalidUTF8   Code = 3502 // a WebSocket text frame that is not UTF-8
	DisconnectUnauthorized  Code = 3503 // the connect credentials were refused
	DisconnectKicked        Code = 3504 // the operator or the game removed this session
)

// Reconnect reports whether a client disconnected with c should connect again.
func (c Code) Reconnect() bool { return c >= 3000 && c < 3500 }

// IsDisconnect reports whether c is a disconnect code rather than an error code.
func (c Code) IsDisconnect() bool { return c >= 3000 && c < 4000 }

var codeText = map[Code]string{
	CodeBadRequest:        "bad request",
	CodeUnknownOp:         "unknown op",
	CodeNotConnected:      "not connected",
	CodeAlreadyConnected:  "already connected",
	CodePermissionDenied:  "permission denied",
	CodeBadTopic:          "bad topic",
	CodeAlreadySubscribed: "already subscribed",
	CodeNotSubscribed:     "not subscribed",
	CodeLimitExceeded:     "limit exceeded",
	CodeRateLimited:       "rate limited",
	CodeNotFound:          "not found",
	CodeTimeout:           "timeout",
	CodeUnavailable:       "unavailable",
	CodeCircuitOpen:       "circuit open",
	CodeBadPosition:       "bad position",
	CodeInternal:          "internal error",
	CodeServiceError:      "service error",
	CodeOverloaded:        "overloaded",

	DisconnectShutdown:          "shutdown",
	DisconnectHeartbeat:         "heartbeat timeout",
	DisconnectSlowConsumer:      "slow consumer",
	DisconnectInternal:          "internal error",
	DisconnectConnectTimeout:    "connect timeout",
	DisconnectTooManyConns:      "too many connections",
	DisconnectInsufficientState: "insufficient state",
	DisconnectRateLimited:       "rate limited",
	DisconnectBadRequest:        "bad request",
	DisconnectFrameTooLarge:     "frame too large",
	DisconnectInvalidUTF8:       "invalid utf-8",
	DisconnectUnauthorized:      "unauthorized",
	DisconnectKicked:            "kicked",
}

// String returns the code's short name, which is also its metric label.
func (c Code) String() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// Codes lists every defined code in ascending order, for documentation and tests.
func Codes() []Code {
	return []Code{
		CodeBadRequest, CodeUnknownOp, CodeNotConnected, CodeAlreadyConnected,
		CodePermissionDenied, CodeBadTopic, CodeAlreadySubscribed, CodeNotSubscribed,
		CodeLimitExceeded, CodeRateLimited, CodeNotFound, CodeTimeout, CodeUnavailable,
		CodeCircuitOpen, CodeBadPosition, CodeInternal, CodeServiceError, CodeOverloaded,
		DisconnectShutdown, DisconnectHeartbeat, DisconnectSlowConsumer, DisconnectInternal,
		DisconnectConnectTimeout, DisconnectTooManyConns, DisconnectInsufficientState,
		DisconnectRateLimited, DisconnectBadRequest, DisconnectFrameTooLarge,
		DisconnectInvalidUTF8, DisconnectUnauthorized, DisconnectKicked,
	}
}

// Error is a failure with a wire code, returned by Herald's packages and by the
// client SDK for error frames and disconnects. Compare codes with errors.As.
type Error struct {
	Code   Code
	Reason string
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("herald: %s (%d)", e.Code, uint32(e.Code))
	}
	return fmt.Sprintf("herald: %s (%d): %s", e.Code, uint32(e.Code), e.Reason)
}

// Errorf builds an *Error with a formatted reason.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}
