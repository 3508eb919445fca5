package transport

import (
	"encoding/binary"

	"github.com/heraldgg/herald/protocol"
)

// Kind is the transport a connection arrived on.
type Kind uint8

const (
	WebSocket Kind = iota
	TCP
	// NumKinds sizes tables indexed by Kind.
	NumKinds
)

func (k Kind) String() string {
	if k == WebSocket {
		return "websocket"
	}
	return "tcp"
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// AppendFrame appends one wire frame carrying payload, as a server writes it on a
// transport of kind k for codec c. A server's WebSocket frames are unmasked, so the
// bytes are the same for every recipient and can be built once per message:
//
//	WebSocket:  1000oooo | 0lllllll [len16 | len64] | payload   (o: 1 text/JSON, 2 binary/Protobuf)
//	TCP:        len32 big-endian | payload
func AppendFrame(dst []byte, k Kind, c protocol.Codec, payload []byte) []byte {
	if k == TCP {
		return protocol.AppendTCPFrame(dst, payload)
	}
	op := byte(opText)
	if c == protocol.CodecProto {
		op = opBinary
	}
	return appendWSFrame(dst, op, payload)
}

func appendWSFrame(dst []byte, op byte, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// FrameOverhead is the most bytes AppendFrame adds to a payload.
const FrameOverhead = 10
