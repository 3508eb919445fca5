package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// The JSON form of the envelope. Field names are the proto field names; op and kind
// are lower-case names; data is any JSON value, or data_b64 (standard base64) when
// the payload is not JSON. Zero-valued fields are omitted.

var opName = map[Op]string{
	Op_OP_UNSPECIFIED:  "",
	Op_OP_CONNECT:      "connect",
	Op_OP_PING:         "ping",
	Op_OP_SUB:          "sub",
	Op_OP_UNSUB:        "unsub",
	Op_OP_PUB:          "pub",
	Op_OP_REQ:          "req",
	Op_OP_MOVE:         "move",
	Op_OP_CONNECTED:    "connected",
	Op_OP_PONG:         "pong",
	Op_OP_SUBSCRIBED:   "subscribed",
	Op_OP_UNSUBSCRIBED: "unsubscribed",
	Op_OP_PUBLISHED:    "published",
	Op_OP_REPLY:        "reply",
	Op_OP_MOVED:        "moved",
	Op_OP_MSG:          "msg",
	Op_OP_ENTER:        "enter",
	Op_OP_LEAVE:        "leave",
	Op_OP_ERROR:        "error",
	Op_OP_DISCONNECT:   "disconnect",
}

var opByName = func() map[string]Op {
	m := make(map[string]Op, len(opName))
	for op, n := range opName {
		if n != "" {
			m[n] = op
		}
	}
	return m
}()

var kindName = map[Kind]string{
	Kind_KIND_TOPIC:     "topic",
	Kind_KIND_BROADCAST: "broadcast",
	Kind_KIND_PUSH:      "push",
	Kind_KIND_REGION:    "region",
}

var kindByName = map[string]Kind{
	"topic": Kind_KIND_TOPIC, "broadcast": Kind_KIND_BROADCAST,
	"push": Kind_KIND_PUSH, "region": Kind_KIND_REGION,
}

// Name returns the op's JSON name ("sub", "msg", …), or "" for an unknown op.
func (o Op) Name() string { return opName[o] }

// OpByName maps a JSON op name to its Op.
func OpByName(name string) (Op, bool) {
	op, ok := opByName[name]
	return op, ok
}

// Name returns the kind's JSON name.
func (k Kind) Name() string { return kindName[k] }

type jsonPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

type jsonEnvelope struct {
	Op          string            `json:"op"`
	ID          uint64            `json:"id"`
	Topic       string            `json:"topic"`
	Data        json.RawMessage   `json:"data"`
	DataB64     []byte            `json:"data_b64"`
	Offset      uint64            `json:"offset"`
	Epoch       string            `json:"epoch"`
	Since       *jsonPosition     `json:"since"`
	Recovered   bool              `json:"recovered"`
	Code        uint32            `json:"code"`
	Reason      string            `json:"reason"`
	Reconnect   bool              `json:"reconnect"`
	Session     string            `json:"session"`
	User        string            `json:"user"`
	Token       string            `json:"token"`
	Node        string            `json:"node"`
	HeartbeatMs uint32            `json:"heartbeat_ms"`
	Kind        string            `json:"kind"`
	Route       string            `json:"route"`
	Map         string            `json:"map"`
	X           float64           `json:"x"`
	Y           float64           `json:"y"`
	Meta        map[string]string `json:"meta"`
	Entity      string            `json:"entity"`
}

// DecodeJSON decodes the JSON form of an envelope into e.
func DecodeJSON(b []byte, e *Envelope) error {
	e.Reset()
	if !utf8.Valid(b) {
		return &Error{Code: CodeBadRequest, Reason: "frame is not valid UTF-8"}
	}
	var j jsonEnvelope
	if err := json.Unmarshal(b, &j); err != nil {
		// Salvage the id so the error frame answers the right request.
		var idOnly struct {
			ID uint64 `json:"id"`
		}
		if json.Unmarshal(b, &idOnly) == nil {
			e.Id = idOnly.ID
		}
		return &Error{Code: CodeBadRequest, Reason: "malformed JSON envelope: " + jsonErrorText(err)}
	}
	e.Id = j.ID
	op, ok := opByName[j.Op]
	if !ok {
		return &Error{Code: CodeUnknownOp, Reason: strconv.Quote(j.Op) + " is not an op"}
	}
	e.Op = op
	if j.Kind != "" {
		k, ok := kindByName[j.Kind]
		if !ok {
			return &Error{Code: CodeBadRequest, Reason: "unknown kind " + strconv.Quote(j.Kind)}
		}
		e.Kind = k
	}
	switch {
	case len(j.Data) > 0 && string(j.Data) != "null":
		if len(j.DataB64) > 0 {
			return &Error{Code: CodeBadRequest, Reason: "data and data_b64 are exclusive"}
		}
		e.Data = compactJSON(j.Data)
	case len(j.DataB64) > 0:
		e.Data = j.DataB64
	}
	e.Topic, e.Offset, e.Epoch = j.Topic, j.Offset, j.Epoch
	if j.Since != nil {
		e.Since = &Position{Offset: j.Since.Offset, Epoch: j.Since.Epoch}
	}
	e.Recovered, e.Code, e.Reason, e.Reconnect = j.Recovered, j.Code, j.Reason, j.Reconnect
	e.Session, e.User, e.Token, e.Node = j.Session, j.User, j.Token, j.Node
	e.HeartbeatMs, e.Route, e.Map, e.X, e.Y = j.HeartbeatMs, j.Route, j.Map, j.X, j.Y
	e.Meta, e.Entity = j.Meta, j.Entity
	return nil
}

// compactJSON strips insignificant white space so that a payload costs the same
// bytes whoever published it; it returns raw unchanged when already compact.
func compactJSON(raw json.RawMessage) []byte {
	needs := false
	inString, escaped := false, false
	for _, c := range raw {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\n' || c == '\r' || c == '\t'):
			needs = true
		}
		if needs {
			break
		}
	}
	out := make([]byte, 0, len(raw))
	if !needs {
		return append(out, raw...)
	}
	buf := bytes.NewBuffer(out)
	if err := json.Compact(buf, raw); err != nil {
		return append(out[:0], raw...)
	}
	return buf.Bytes()
}

func jsonErrorText(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return e.Error() + " at byte " + strconv.FormatInt(e.Offset, 10)
	case *json.UnmarshalTypeError:
		return "field " + strconv.Quote(e.Field) + " must be " + e.Type.String()
	}
	return err.Error()
}

// AppendJSON appends the JSON form of e to dst. It never fails: a payload that is
// not valid JSON is carried as data_b64, and non-finite coordinates as 0.
func AppendJSON(dst []byte, e *Envelope) []byte {
	dst = append(dst, `{"op":`...)
	dst = appendString(dst, opName[e.Op])
	if e.Id != 0 {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, e.Id, 10)
	}
	if e.Kind != Kind_KIND_TOPIC {
		dst = append(dst, `,"kind":`...)
		dst = appendString(dst, kindName[e.Kind])
	}
	dst = appendStringField(dst, "topic", e.Topic)
	if e.Offset != 0 {
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, e.Offset, 10)
	}
	dst = appendStringField(dst, "epoch", e.Epoch)
	if e.Since != nil {
		dst = append(dst, `,"since":{"offset":`...)
		dst = strconv.AppendUint(dst, e.Since.Offset, 10)
		dst = append(dst, `,"epoch":`...)
		dst = appendString(dst, e.Since.Epoch)
		dst = append(dst, '}')
	}
	if e.Recovered {
		dst = append(dst, `,"recovered":true`...)
	}
	if e.Code != 0 {
		dst = append(dst, `,"code":`...)
		dst = strconv.AppendUint(dst, uint64(e.Code), 10)
	}
	dst = appendStringField(dst, "reason", e.Reason)
	if e.Op == Op_OP_DISCONNECT {
		dst = append(dst, `,"reconnect":`...)
		dst = strconv.AppendBool(dst, e.Reconnect)
	}
	dst = appendStringField(dst, "session", e.Session)
	dst = appendStringField(dst, "user", e.User)
	dst = appendStringField(dst, "token", e.Token)
	dst = appendStringField(dst, "node", e.Node)
	if e.HeartbeatMs != 0 {
		dst = append(dst, `,"heartbeat_ms":`...)
		dst = strconv.AppendUint(dst, uint64(e.HeartbeatMs), 10)
	}
	dst = appendStringField(dst, "route", e.Route)
	if e.Map != "" {
		dst = appendStringField(dst, "map", e.Map)
		dst = append(dst, `,"x":`...)
		dst = appendFloat(dst, e.X)
		dst = append(dst, `,"y":`...)
		dst = appendFloat(dst, e.Y)
	}
	dst = appendStringField(dst, "entity", e.Entity)
	if len(e.Meta) > 0 {
		dst = append(dst, `,"meta":{`...)
		first := true
		for k, v := range e.Meta {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, v)
		}
		dst = append(dst, '}')
	}
	if len(e.Data) > 0 {
		if json.Valid(e.Data) {
			dst = append(dst, `,"data":`...)
			dst = append(dst, e.Data...)
		} else {
			dst = append(dst, `,"data_b64":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, e.Data)
			dst = append(dst, '"')
		}
	}
	return append(dst, '}')
}

func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

func appendStringField(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, v)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD so the
// output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
