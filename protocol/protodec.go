package protocol

import (
	"errors"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The envelope's Protobuf decoder is written out by hand: every client reads one
// envelope per message and the node one per client frame, and the generated
// decoder's reflection and allocations were a third of a subscriber's CPU in
// `herald bench` (docs/benchmarks.md). It accepts exactly what proto.Unmarshal
// accepts (FuzzDecodeProto compares the two): last value wins for scalars,
// repeated `since` fields merge, strings must be valid UTF-8, a known field with
// the wrong wire type and unknown fields are skipped.

var errMalformed = errors.New("malformed")

// repeated holds the strings of the previous envelope that a decoder may reuse:
// a field equal to its counterpart here keeps that string rather than
// allocating a copy, as the topic and epoch of a subscriber's messages repeat.
// borrow makes Data point into the input instead of a copy.
type repeated struct {
	topic, epoch, session, user, route, mapName string
	borrow                                      bool
}

// decodeProto decodes b into e, which must be zero.
func decodeProto(b []byte, e *Envelope, reuse *repeated) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if m := decodeField(b, num, typ, e, reuse); m >= 0 {
			b = b[m:]
			continue
		} else if m != skipField {
			return errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return errMalformed
		}
		b = b[m:]
	}
	return nil
}

// skipField is decodeField's answer for a field it does not take: unknown, or
// known with another wire type.
const skipField = -1 << 20

// decodeField decodes one field's value from b into e and returns the bytes it
// took, skipField, or another negative number for malformed input.
func decodeField(b []byte, num protowire.Number, typ protowire.Type, e *Envelope, reuse *repeated) int {
	switch typ {
	case protowire.VarintType:
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return n
		}
		switch num {
		case 1:
			e.Op = Op(int32(v))
		case 2:
			e.Id = v
		case 5:
			e.Offset = v
		case 8:
			e.Recovered = v != 0
		case 9:
			e.Code = uint32(v)
		case 11:
			e.Reconnect = v != 0
		case 16:
			e.HeartbeatMs = uint32(v)
		case 17:
			e.Kind = Kind(int32(v))
		default:
			return skipField
		}
		return n
	case protowire.Fixed64Type:
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return n
		}
		switch num {
		case 20:
			e.X = math.Float64frombits(v)
		case 21:
			e.Y = math.Float64frombits(v)
		default:
			return skipField
		}
		return n
	case protowire.BytesType:
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n
		}
		var ok bool
		switch num {
		case 3:
			e.Topic, ok = str(v, reuse.topic)
		case 4:
			// Callers keep Data (the node publishes it, a client's handler may
			// hold it), so it gets its own copy unless borrowed; an empty one is
			// non-nil, as proto.Unmarshal leaves it.
			if reuse.borrow {
				e.Data = v[:len(v):len(v)]
			} else {
				e.Data = append(make([]byte, 0, len(v)), v...)
			}
			ok = true
		case 6:
			e.Epoch, ok = str(v, reuse.epoch)
		case 7:
			if e.Since == nil {
				e.Since = &Position{}
			}
			ok = decodePosition(v, e.Since)
		case 10:
			e.Reason, ok = str(v, "")
		case 12:
			e.Session, ok = str(v, reuse.session)
		case 13:
			e.User, ok = str(v, reuse.user)
		case 14:
			e.Token, ok = str(v, "")
		case 15:
			e.Node, ok = str(v, "")
		case 18:
			e.Route, ok = str(v, reuse.route)
		case 19:
			e.Map, ok = str(v, reuse.mapName)
		case 22:
			if e.Meta == nil {
				e.Meta = make(map[string]string)
			}
			ok = decodeMetaEntry(v, e.Meta)
		case 23:
			e.Entity, ok = str(v, "")
		default:
			return skipField
		}
		if !ok {
			return -1
		}
		return n
	}
	return skipField
}

// consumeTag is protowire.ConsumeTag refusing field numbers past the largest
// valid one, as proto.Unmarshal does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// str returns b as a string, reuse itself when it holds the same bytes.
func str(b []byte, reuse string) (string, bool) {
	if string(b) == reuse {
		return reuse, true
	}
	if !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

func decodePosition(b []byte, p *Position) bool {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			p.Offset, n = protowire.ConsumeVarint(b)
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				var ok bool
				if p.Epoch, ok = str(v, ""); !ok {
					return false
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// decodeMetaEntry adds one map entry; a missing key or value is "".
func decodeMetaEntry(b []byte, meta map[string]string) bool {
	var key, val string
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			s, ok := str(v, "")
			if !ok {
				return false
			}
			if num == 1 {
				key = s
			} else {
				val = s
			}
			n = m
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	meta[key] = val
	return true
}
