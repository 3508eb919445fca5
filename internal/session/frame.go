package session

import (
	"sync/atomic"
	"time"

	"github.com/heraldgg/herald/internal/transport"
	"github.com/heraldgg/herald/protocol"
)

// NumVariants is the number of wire forms a frame can take: one per transport and codec.
const NumVariants = int(transport.NumKinds) * protocol.NumCodecs

// Variant indexes the wire form for a transport kind and codec.
func Variant(k transport.Kind, c protocol.Codec) int { return int(k)*protocol.NumCodecs + int(c) }

// Frame is one outbound message shared by all its recipients. Env must not change
// once the frame is handed to a queue.
type Frame struct {
	Env *protocol.Envelope
	// Offset orders topic messages for deduplication; 0 for anything else.
	Offset uint64
	// Lossy frames may be dropped, oldest first, when a queue is full.
	Lossy bool
	// Entity, when set, makes the frame conflatable: a newer frame with the same
	// entity replaces an older one still queued for the same session.
	Entity string
	// Fence marks a frame of Entity that must keep its place: it is never
	// replaced, and a newer frame of the entity does not replace one queued
	// before it. An entity's enter and leave are fences, so that a position
	// update cannot jump back across them.
	Fence bool
	// Linger lets the frame wait up to this long in a queue for more frames to
	// share its write (hub.MapConfig.FlushDelay); 0 sends it at the next flush.
	Linger time.Duration

	wire [NumVariants]atomic.Pointer[[]byte]
}

// NewFrame wraps env.
func NewFrame(env *protocol.Envelope) *Frame { return &Frame{Env: env} }

// Wire returns the frame's bytes for variant v, encoding them on first use. Safe
// for concurrent use: racing encoders produce identical bytes and one wins.
func (f *Frame) Wire(v int) []byte {
	if p := f.wire[v].Load(); p != nil {
		return *p
	}
	k := transport.Kind(v / protocol.NumCodecs)
	c := protocol.Codec(v % protocol.NumCodecs)
	payload, err := c.Append(make([]byte, 0, 64+len(f.Env.Data)), f.Env)
	if err != nil {
		// Only an envelope with invalid UTF-8 strings fails Protobuf encoding;
		// send it as an empty frame rather than crash a shard.
		payload = nil
	}
	b := transport.AppendFrame(make([]byte, 0, len(payload)+transport.FrameOverhead), k, c, payload)
	if f.wire[v].CompareAndSwap(nil, &b) {
		return b
	}
	return *f.wire[v].Load()
}
