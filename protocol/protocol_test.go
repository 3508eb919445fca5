package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

func sampleEnvelopes() map[string]*Envelope {
	return map[string]*Envelope{
		"connect":    {Op: Op_OP_CONNECT, Id: 1, User: "alice", Token: "t\"ok\n"},
		"connected":  {Op: Op_OP_CONNECTED, Id: 1, Session: "s1", Node: "n1", HeartbeatMs: 30000},
		"sub since":  {Op: Op_OP_SUB, Id: 2, Topic: "chat.room", Since: &Position{Offset: 41, Epoch: "ab"}},
		"subscribed": {Op: Op_OP_SUBSCRIBED, Id: 2, Topic: "chat.room", Offset: 42, Epoch: "ab", Recovered: true},
		"pub object": {Op: Op_OP_PUB, Id: 3, Topic: "chat.room", Data: []byte(`{"text":"hi ✓"}`)},
		"pub binary": {Op: Op_OP_PUB, Id: 3, Topic: "chat.room", Data: []byte{0, 1, 2, 0xff}},
		"msg":        {Op: Op_OP_MSG, Topic: "t", Offset: 7, Epoch: "e", Data: []byte(`[1,2,3]`)},
		"broadcast":  {Op: Op_OP_MSG, Kind: Kind_KIND_BROADCAST, Data: []byte(`"all"`)},
		"region":     {Op: Op_OP_MSG, Kind: Kind_KIND_REGION, Map: "demo", X: 1.5, Y: -0, Data: []byte(`1`)},
		"error":      {Op: Op_OP_ERROR, Id: 9, Code: uint32(CodePermissionDenied), Reason: "no"},
		"disconnect": {Op: Op_OP_DISCONNECT, Code: uint32(DisconnectShutdown), Reason: "shutdown", Reconnect: true},
		"req":        {Op: Op_OP_REQ, Id: 4, Route: "room.join", Meta: map[string]string{"a": "b"}, Data: []byte(`{}`)},
		"enter":      {Op: Op_OP_ENTER, Map: "demo", X: 10, Y: 20, Entity: "s2"},
		"control":    {Op: Op_OP_ERROR, Reason: "\x01\x7f\u2028"},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, env := range sampleEnvelopes() {
		for _, codec := range []Codec{CodecJSON, CodecProto} {
			t.Run(name+"/"+codec.String(), func(t *testing.T) {
				b, err := codec.Append(nil, env)
				if err != nil {
					t.Fatal(err)
				}
				if codec == CodecJSON && !json.Valid(b) {
					t.Fatalf("invalid JSON: %s", b)
				}
				if got := DetectCodec(b); got != codec {
					t.Errorf("DetectCodec = %v, want %v", got, codec)
				}
				var got Envelope
				if err := codec.Decode(b, &got); err != nil {
					t.Fatalf("decode %s: %v", b, err)
				}
				if diff := cmp.Diff(env, &got, protocmp.Transform()); diff != "" {
					t.Errorf("round trip (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		code   Code
		wantID uint64
	}{
		{"not json", `{"op":`, CodeBadRequest, 0},
		{"array", `[1,2]`, CodeBadRequest, 0},
		{"unknown op", `{"op":"fly","id":5}`, CodeUnknownOp, 5},
		{"missing op", `{"id":6}`, CodeUnknownOp, 6},
		{"wrong type", `{"op":"sub","id":7,"topic":3}`, CodeBadRequest, 7},
		{"both data", `{"op":"pub","data":1,"data_b64":"AA=="}`, CodeBadRequest, 0},
		{"bad utf8", "{\"op\":\"pub\",\"topic\":\"\xff\"}", CodeBadRequest, 0},
		{"bad kind", `{"op":"msg","kind":"x"}`, CodeBadRequest, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e Envelope
			err := DecodeJSON([]byte(tc.in), &e)
			var perr *Error
			if !errors.As(err, &perr) || perr.Code != tc.code {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if e.Id != tc.wantID {
				t.Errorf("id = %d, want %d", e.Id, tc.wantID)
			}
		})
	}
}

func TestJSONDataForms(t *testing.T) {
	var e Envelope
	if err := DecodeJSON([]byte(`{"op":"pub","data":{ "a" : [1, 2] }}`), &e); err != nil {
		t.Fatal(err)
	}
	if string(e.Data) != `{"a":[1,2]}` {
		t.Errorf("data = %s, want compacted", e.Data)
	}
	if err := DecodeJSON([]byte(`{"op":"pub","data_b64":"AAEC"}`), &e); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.Data, []byte{0, 1, 2}) {
		t.Errorf("data = %v", e.Data)
	}
	out := AppendJSON(nil, &Envelope{Op: Op_OP_MSG, Data: []byte{0, 1, 2}})
	if want := `{"op":"msg","data_b64":"AAEC"}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestDecodeProtoErrors(t *testing.T) {
	var e Envelope
	var perr *Error
	if err := DecodeProto([]byte{0xff, 0xff}, &e); !errors.As(err, &perr) || perr.Code != CodeBadRequest {
		t.Errorf("garbage: %v", err)
	}
	b, _ := AppendProto(nil, &Envelope{Op: Op(999), Id: 3})
	if err := DecodeProto(b, &e); !errors.As(err, &perr) || perr.Code != CodeUnknownOp || e.Id != 3 {
		t.Errorf("unknown op: %v id=%d", err, e.Id)
	}
}

func TestCodeRanges(t *testing.T) {
	seen := map[Code]bool{}
	for _, c := range Codes() {
		if seen[c] {
			t.Errorf("duplicate %d", c)
		}
		seen[c] = true
		if c.String() == "" || c.String()[0] == 'c' && c.String()[:4] == "code" {
			t.Errorf("code %d has no name", c)
		}
		if c.IsDisconnect() != (c >= 3000) {
			t.Errorf("code %d: IsDisconnect wrong", c)
		}
	}
	if !DisconnectShutdown.Reconnect() || DisconnectKicked.Reconnect() {
		t.Error("reconnect ranges wrong")
	}
}

func frames(payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b = AppendTCPFrame(b, []byte(p))
	}
	return b
}

func TestTCPReaderEverySplit(t *testing.T) {
	want := []string{"a", "", "hello world", string(make([]byte, 300))}
	stream := frames(want...)
	for split := 0; split <= len(stream); split++ {
		for split2 := split; split2 <= len(stream); split2 += 7 {
			r := NewTCPReader(1024)
			var got []string
			collect := func(f []byte) error { got = append(got, string(f)); return nil }
			for _, part := range [][]byte{stream[:split], stream[split:split2], stream[split2:]} {
				if err := r.Feed(part, collect); err != nil {
					t.Fatalf("split %d/%d: %v", split, split2, err)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("split %d/%d (-want +got):\n%s", split, split2, diff)
			}
			if r.Buffered() != 0 {
				t.Fatalf("split %d: %d bytes left", split, r.Buffered())
			}
		}
	}
}

func TestTCPReaderTooLarge(t *testing.T) {
	stream := frames(string(make([]byte, 100)))
	for _, split := range []int{0, 2, 4, 50} {
		r := NewTCPReader(99)
		err := r.Feed(stream[:split], func([]byte) error { return nil })
		if err == nil {
			err = r.Feed(stream[split:], func([]byte) error { return nil })
		}
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("split %d: err = %v", split, err)
		}
	}
	// A huge declared length must be refused before anything is allocated for it.
	r := NewTCPReader(1 << 16)
	huge := []byte{0xff, 0xff, 0xff, 0xff, 1}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		_ = r.Feed(huge, func([]byte) error { return nil })
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("%d bytes allocated for refused frames", n)
	}
}

func TestReadTCPFrame(t *testing.T) {
	readers := map[string]func([]byte) io.Reader{
		"plain":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"buffered": func(b []byte) io.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 16) },
	}
	stream := frames("one", "", "two", "0123456789")
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			rd := wrap(stream)
			var buf []byte
			for _, want := range []string{"one", "", "two", "0123456789"} {
				got, err := ReadTCPFrame(rd, buf, 10)
				if err != nil || string(got) != want {
					t.Fatalf("got %q %v, want %q", got, err, want)
				}
				buf = got
			}
			if _, err := ReadTCPFrame(rd, buf, 10); err != io.EOF {
				t.Errorf("at the end: err = %v, want EOF", err)
			}
			for _, cut := range []int{1, 3, 5} {
				if _, err := ReadTCPFrame(wrap(frames("abc")[:cut]), nil, 10); err != io.ErrUnexpectedEOF {
					t.Errorf("cut after %d bytes: err = %v, want ErrUnexpectedEOF", cut, err)
				}
			}
			if _, err := ReadTCPFrame(wrap(frames("0123456789A")), nil, 10); !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := &Envelope{Op: Op_OP_MSG, Topic: "chat.room.1", Offset: 123456, Epoch: "abcdef", Data: []byte(`{"text":"hello there, everyone","from":"alice"}`)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], e)
	}
}

func BenchmarkAppendProto(b *testing.B) {
	e := &Envelope{Op: Op_OP_MSG, Topic: "chat.room.1", Offset: 123456, Epoch: "abcdef", Data: []byte(`{"text":"hello there, everyone","from":"alice"}`)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendProto(buf[:0], e)
	}
}

// BenchmarkDecodeProtoMsg decodes a 64-byte topic message into a reused
// envelope, as every subscriber does, with the hand-written decoder and with
// the generated one.
func BenchmarkDecodeProtoMsg(b *testing.B) {
	msg, err := AppendProto(nil, &Envelope{Op: Op_OP_MSG, Kind: Kind_KIND_TOPIC, Topic: "room.lobby",
		Data: bytes.Repeat([]byte{'x'}, 64), Offset: 123456, Epoch: "a1b2c3d4"})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("herald", func(b *testing.B) {
		var e Envelope
		b.ReportAllocs()
		for b.Loop() {
			if err := DecodeProto(msg, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("generated", func(b *testing.B) {
		var e Envelope
		b.ReportAllocs()
		for b.Loop() {
			e.Reset()
			if err := proto.Unmarshal(msg, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
