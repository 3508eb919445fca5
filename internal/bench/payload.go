package bench

import "time"

// A fanout payload is a JSON string of exactly Size bytes, so that it passes as
// "data" through the admin API and reaches JSON and Protobuf clients alike:
//
//	"TTTTTTTTTTTTTTTTSSSSSSSSxxxx…x"
//	 │               │       └ padding up to Size
//	 │               └ sequence number within the topic, 8 hex digits
//	 └ send time, nanoseconds since the run's clock origin, 16 hex digits
//
// Fixed-width hex keeps the subscriber's decoding to a few dozen instructions,
// which matters at millions of deliveries per second in the same process.
const (
	payloadTime   = 1
	payloadSeq    = payloadTime + 16
	payloadHeader = payloadSeq + 8 + 1 // and the closing quote
)

const hexDigits = "0123456789abcdef"

// fillPayload writes a payload of len(p) bytes stamped with sent and seq.
func fillPayload(p []byte, sent time.Duration, seq uint32) {
	p[0] = '"'
	putHex(p[payloadTime:payloadSeq], uint64(sent))
	putHex(p[payloadSeq:payloadSeq+8], uint64(seq))
	for i := payloadHeader - 1; i < len(p)-1; i++ {
		p[i] = 'x'
	}
	p[len(p)-1] = '"'
}

func putHex(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = hexDigits[v&15]
		v >>= 4
	}
}

// parsePayload returns the send time and sequence number, or ok false for a
// payload that is not the bench's.
func parsePayload(p []byte) (sent time.Duration, seq uint32, ok bool) {
	if len(p) < payloadHeader || p[0] != '"' {
		return 0, 0, false
	}
	t, ok1 := parseHex(p[payloadTime:payloadSeq])
	s, ok2 := parseHex(p[payloadSeq : payloadSeq+8])
	return time.Duration(t), uint32(s), ok1 && ok2
}

func parseHex(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}
