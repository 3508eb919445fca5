package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

func FuzzDecodeJSON(f *testing.F) {
	for _, env := range sampleEnvelopes() {
		f.Add(AppendJSON(nil, env))
	}
	f.Add([]byte(`{"op":"sub","since":{"offset":-1}}`))
	f.Add([]byte("{\"op\":\"pub\",\"data\":\"\xff\"}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Envelope
		if err := DecodeJSON(b, &e); err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error is not a *protocol.Error: %v", err)
			}
			return
		}
		// Whatever decodes must encode to valid JSON that decodes to the same frame.
		out := AppendJSON(nil, &e)
		if !json.Valid(out) {
			t.Fatalf("re-encoding is not JSON: %s", out)
		}
		var again Envelope
		if err := DecodeJSON(out, &again); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
	})
}

func FuzzDecodeProto(f *testing.F) {
	for _, env := range sampleEnvelopes() {
		b, _ := AppendProto(nil, env)
		f.Add(b)
	}
	// Hand-made corners: a known field with another wire type, an unknown
	// field, a group, repeated `since` fields that merge, map entries without
	// key or value, invalid UTF-8 in a string.
	for _, b := range [][]byte{
		{0x1a, 0x01, 0x61, 0x18, 0x05, 0xf8, 0x07, 0x01},
		{0x3a, 0x02, 0x08, 0x07, 0x3a, 0x03, 0x12, 0x01, 0x65},
		{0xb2, 0x01, 0x00, 0xb2, 0x01, 0x03, 0x12, 0x01, 0x76},
		{0x1a, 0x01, 0xff},
		{0x0b, 0x08, 0x01, 0x0c, 0x08, 0x02},
		{0xa1, 0x01, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The hand-written decoder must agree with the generated one.
		var raw, ref Envelope
		rawErr := decodeProto(b, &raw, &repeated{})
		refErr := proto.Unmarshal(b, &ref)
		if (rawErr == nil) != (refErr == nil) {
			t.Fatalf("decoder says %v, proto.Unmarshal says %v", rawErr, refErr)
		}
		if refErr == nil {
			ref.ProtoReflect().SetUnknown(nil)
			if ref.Since != nil {
				ref.Since.ProtoReflect().SetUnknown(nil)
			}
			if !proto.Equal(&raw, &ref) {
				t.Fatalf("decoded %v, proto.Unmarshal decoded %v", &raw, &ref)
			}
		}
		var e Envelope
		if err := DecodeProto(b, &e); err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error is not a *protocol.Error: %v", err)
			}
			return
		}
		var borrowed Envelope
		if err := DecodeProtoBorrowed(b, &borrowed); err != nil || !proto.Equal(&borrowed, &e) {
			t.Fatalf("borrowing decode: %v, %v", err, &borrowed)
		}
		// Decoding again into the same envelope reuses its strings and must
		// give the same result.
		if err := DecodeProto(b, &e); err != nil || !proto.Equal(&e, &raw) {
			t.Fatalf("second decode into the same envelope: %v, %v", err, &e)
		}
		if _, err := AppendProto(nil, &e); err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		_ = AppendJSON(nil, &e)
	})
}

// FuzzTCPReader feeds a stream cut in two at every fuzzed point and checks the
// frames equal those read from the whole stream.
func FuzzTCPReader(f *testing.F) {
	f.Add(frames("a", "bc", ""), uint16(2))
	f.Add([]byte{0, 0, 0, 200, 1, 2}, uint16(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(1))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint16) {
		const max = 256
		whole := func() ([][]byte, error) {
			var out [][]byte
			err := NewTCPReader(max).Feed(stream, func(fr []byte) error {
				out = append(out, bytes.Clone(fr))
				return nil
			})
			return out, err
		}
		want, wantErr := whole()
		c := int(cut) % (len(stream) + 1)
		r := NewTCPReader(max)
		var got [][]byte
		collect := func(fr []byte) error {
			if len(fr) > max {
				t.Fatalf("frame of %d bytes over the limit", len(fr))
			}
			got = append(got, bytes.Clone(fr))
			return nil
		}
		err := r.Feed(stream[:c], collect)
		if err == nil {
			err = r.Feed(stream[c:], collect)
		}
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("split at %d: err %v, whole err %v", c, err, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("split at %d: %d frames, whole %d", c, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}
