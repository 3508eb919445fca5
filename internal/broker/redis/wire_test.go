package redis

import (
	"strconv"
	"testing"

	"github.com/heraldgg/herald/internal/broker"
)

func TestDecodePublication(t *testing.T) {
	cases := []struct {
		name string
		msg  string
		want broker.Publication
		ok   bool
	}{
		{"plain", "42:ab:0:hello", broker.Publication{Topic: "t", Offset: 42, Epoch: "ab", Data: []byte("hello")}, true},
		{"user", "1:ab:3:bobhi", broker.Publication{Topic: "t", Offset: 1, Epoch: "ab", User: "bob", Data: []byte("hi")}, true},
		{"colons in data", "1:ab:1:u:x:y", broker.Publication{Topic: "t", Offset: 1, Epoch: "ab", User: "u", Data: []byte(":x:y")}, true},
		{"empty data", "1:ab:0:", broker.Publication{Topic: "t", Offset: 1, Epoch: "ab", Data: []byte{}}, true},
		{"zero offset", "0:ab:0:", broker.Publication{}, false},
		{"no epoch", "1::0:", broker.Publication{}, false},
		{"user too long", "1:ab:9:bob", broker.Publication{}, false},
		{"negative user", "1:ab:-1:bob", broker.Publication{}, false},
		{"truncated", "1:ab", broker.Publication{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePublication("t", tc.msg)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && (got.Offset != tc.want.Offset || got.Epoch != tc.want.Epoch || got.User != tc.want.User ||
				string(got.Data) != string(tc.want.Data) || got.Topic != "t") {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// encodePublication is the Go twin of the message the publish script builds.
func encodePublication(p broker.Publication) string {
	return strconv.FormatUint(p.Offset, 10) + ":" + p.Epoch + ":" + strconv.Itoa(len(p.User)) + ":" + p.User + string(p.Data)
}

func FuzzDecodePublication(f *testing.F) {
	f.Add("42:ab:3:bobhello")
	f.Add("1:ab:0:")
	f.Add("18446744073709551615:ff:1:x")
	f.Fuzz(func(t *testing.T, msg string) {
		p, err := decodePublication("t", msg)
		if err != nil {
			return
		}
		if again := encodePublication(p); again != msg {
			// Leading zeros or a sign are accepted but not reproduced.
			q, err := decodePublication("t", again)
			if err != nil || q.Offset != p.Offset || q.Epoch != p.Epoch || q.User != p.User || string(q.Data) != string(p.Data) {
				t.Fatalf("%q decoded to %+v, which re-encodes to %q", msg, p, again)
			}
		}
	})
}
