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

// DecodeProto decodes a Protobuf envelope into e.
func DecodeProto(b []byte, e *Envelope) error {
	e.Reset()
	if err := proto.Unmarshal(b, e); err != nil {
		e.Reset()
		return &Error{Code: CodeBadRequest, Reason: "malformed protobuf envelope"}
	}
	if _, ok := opName[e.Op]; !ok || e.Op == Op_OP_UNSPECIFIED {
		return &Error{Code: CodeUnknownOp, Reason: "unknown op"}
	}
	return nil
}
