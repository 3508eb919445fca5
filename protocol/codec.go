package protocol

import (
	"errors"

	"google.golang.org/protobuf/proto"
)

// Codec is one of the two encodings of the envelope.
type Codec uint8

const (
	// CodecJSON is the JSON form: WebSocket text frames, or TCP frames whose first
	// payload byte is '{'.
	CodecJSON Codec = iota
	// CodecProto is the Protobuf form: WebSocket binary frames, or any other TCP frame.
	CodecProto
)

// NumCodecs is the number of codecs, for tables indexed by Codec.
const NumCodecs = 2

func (c Codec) String() string {
	if c == CodecJSON {
		return "json"
	}
	return "protobuf"
}

// ParseCodec maps "json" and "protobuf" (or "proto") to a Codec.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "json":
		return CodecJSON, nil
	case "protobuf", "proto":
		return CodecProto, nil
	}
	return 0, errors.New("protocol: unknown codec " + s)
}

// DetectCodec chooses the codec of a raw-TCP connection from its first frame's
// payload. A Protobuf envelope never starts with '{' (0x7B would be field 15 with the
// deprecated group wire type), so the first byte is enough.
func DetectCodec(payload []byte) Codec {
	for _, b := range payload {
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return CodecJSON
		}
		break
	}
	return CodecProto
}

// Append encodes e in codec c and appends it to dst.
func (c Codec) Append(dst []byte, e *Envelope) ([]byte, error) {
	if c == CodecJSON {
		return AppendJSON(dst, e), nil
	}
	return AppendProto(dst, e)
}

// Decode decodes b (in codec c) into e, which it resets first. On failure it
// returns an *Error with CodeBadRequest or CodeUnknownOp, and e.Id is set when the
// frame carried one, so the caller can answer the right request.
func (c Codec) Decode(b []byte, e *Envelope) error {
	if c == CodecJSON {
		return DecodeJSON(b, e)
	}
	return DecodeProto(b, e)
}

var protoMarshal = proto.MarshalOptions{Deterministic: false}

// AppendProto appends the Protobuf encoding of e to dst.
func AppendProto(dst []byte, e *Envelope) ([]byte, error) {
	return protoMarshal.MarshalAppend(dst, e)
}

// DecodeProto decodes a Protobuf envelope into e. Strings that repeat from one
// envelope to the next on a reused e (topic, epoch, session, user, route, map)
// are kept rather than allocated again.
func DecodeProto(b []byte, e *Envelope) error { return decodeProtoInto(b, e, false) }

// DecodeProtoBorrowed is DecodeProto with e.Data pointing into b instead of a
// copy, for a reader that is done with e before it reuses b: one allocation
// less per message.
func DecodeProtoBorrowed(b []byte, e *Envelope) error { return decodeProtoInto(b, e, true) }

func decodeProtoInto(b []byte, e *Envelope, borrow bool) error {
	reuse := repeated{e.Topic, e.Epoch, e.Session, e.User, e.Route, e.Map, borrow}
	// Zeroing is all a reset needs here; the generated Reset also caches
	// reflection state, which the decoder never uses.
	*e = Envelope{}
	if err := decodeProto(b, e, &reuse); err != nil {
		*e = Envelope{}
		return &Error{Code: CodeBadRequest, Reason: "malformed protobuf envelope"}
	}
	if !knownOp(e.Op) {
		return &Error{Code: CodeUnknownOp, Reason: "unknown op"}
	}
	return nil
}

// opTable answers knownOp without hashing: a map lookup per envelope showed in
// a subscriber's profile. Computed once from opName, read-only after.
var opTable = func() (t [64]bool) {
	for op := range opName {
		if op > Op_OP_UNSPECIFIED && int(op) < len(t) {
			t[op] = true
		}
	}
	return t
}()

// knownOp reports whether op is one of the protocol's operations.
func knownOp(op Op) bool {
	if op >= 0 && int(op) < len(opTable) {
		return opTable[op]
	}
	_, ok := opName[op]
	return ok
}
