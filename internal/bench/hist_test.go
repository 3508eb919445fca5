package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 63, 64, 65, 66, 127, 128, 1000, 1e6, 1e9, 1 << 39, 1<<40 - 1} {
		b := bucketOf(v)
		if b < prev || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		prev = b
		hi := bucketValue(b)
		// The bucket's top is at or above v and within 1/32 of it.
		if hi < v || float64(hi-v) > float64(v)/32+1 {
			t.Errorf("bucketValue(bucketOf(%d)) = %d", v, hi)
		}
	}
	if b := bucketOf(1 << 50); b != numBuckets-1 {
		t.Errorf("a value past the range lands in %d, not the last bucket", b)
	}
}

func TestPercentiles(t *testing.T) {
	var h hist
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(rand.N(50 * time.Millisecond))
		h.record(i, time.Duration(vals[i]))
	}
	slices.Sort(vals)
	got := h.snapshot()
	if got.Count != uint64(len(vals)) || got.Max != ms(vals[len(vals)-1]) {
		t.Fatalf("count %d max %v; want %d and %v", got.Count, got.Max, len(vals), ms(vals[len(vals)-1]))
	}
	for _, c := range []struct {
		q   float64
		got float64
	}{{0.5, got.P50}, {0.9, got.P90}, {0.99, got.P99}, {0.999, got.P999}} {
		want := ms(vals[int(c.q*float64(len(vals)))-1])
		if c.got < want*0.99 || c.got > want*1.04 {
			t.Errorf("p%v = %.4f ms; want %.4f ms within the bucket width", c.q*100, c.got, want)
		}
	}
	h.reset()
	if s := h.snapshot(); s.Count != 0 || s.Max != 0 {
		t.Errorf("after reset: %+v", s)
	}
}

func TestPayload(t *testing.T) {
	for _, size := range []int{payloadHeader, 64, 1000} {
		p := make([]byte, size)
		fillPayload(p, 123456789*time.Microsecond, 0xdeadbeef)
		if p[0] != '"' || p[size-1] != '"' {
			t.Fatalf("size %d: %q is not a JSON string", size, p)
		}
		sent, seq, ok := parsePayload(p)
		if !ok || sent != 123456789*time.Microsecond || seq != 0xdeadbeef {
			t.Errorf("size %d: parsed %v %x %v", size, sent, seq, ok)
		}
	}
	for _, bad := range []string{``, `"short"`, `{"not":"a bench payload at all"}`, `"zzzzzzzzzzzzzzzzzzzzzzzzzzzz"`} {
		if _, _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsePayload(%q) accepted it", bad)
		}
	}
}

func TestSourceAddrs(t *testing.T) {
	cases := []struct {
		host    string
		n, per  int
		want    []string
		comment string
	}{
		{"127.0.0.1", 100, 5000, nil, "few connections need no spreading"},
		{"127.0.0.1", 12000, 5000, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, ""},
		{"localhost", 11, 5, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, ""},
		{"10.0.0.5", 12000, 5000, nil, "only loopback has the addresses to spread over"},
	}
	for _, c := range cases {
		got := addrStrings(sourceAddrs(c.host, c.n, c.per))
		if len(got) == 0 {
			got = nil
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s, %d conns, %d per source: %v; want %v %s", c.host, c.n, c.per, got, c.want, c.comment)
		}
	}
}
