package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram is log-linear, like HdrHistogram: values below 2^subBits
// nanoseconds have a bucket each, and every power of two above that is split into
// 2^(subBits-1) buckets, so a bucket is at most 1/32 (3%) of its value wide. 1,200
// buckets cover 1 ns to 2^40 ns (18 minutes) in 9.6 KB, small enough to keep one
// per shard.
const (
	subBits    = 6
	subCount   = 1 << subBits
	halfSub    = subCount / 2
	maxExp     = 40
	numBuckets = subCount + (maxExp-subBits)*halfSub
)

// histShards spreads recorders over several histograms: fan-out records from
// thousands of reader goroutines at once, and one shared set of counters would
// bounce its cache lines between the cores on every delivery.
const histShards = 8

// hist is a concurrent latency histogram. record may be called from any
// goroutine; the snapshot is exact once the recorders stopped.
type hist struct {
	shards [histShards]histShard
}

type histShard struct {
	counts [numBuckets]atomic.Uint64
	max    atomic.Int64
	_      [64]byte // keep the next shard's max off this cache line
}

func bucketOf(v int64) int {
	if v < subCount {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits // ≥ 1: how far v is shifted to keep 6 bits
	if e >= maxExp-subBits+1 {
		return numBuckets - 1
	}
	sub := int(v>>e) - halfSub // 0 … halfSub-1
	return subCount + (e-1)*halfSub + sub
}

// bucketValue is the highest value that falls in bucket b, so that percentiles
// never understate.
func bucketValue(b int) int64 {
	if b < subCount {
		return int64(b)
	}
	e := (b-subCount)/halfSub + 1
	sub := (b-subCount)%halfSub + halfSub
	return int64(sub+1)<<e - 1
}

// record adds one latency; shard picks the recorder's histogram.
func (h *hist) record(shard int, d time.Duration) {
	s := &h.shards[shard%histShards]
	s.counts[bucketOf(int64(d))].Add(1)
	for {
		m := s.max.Load()
		if int64(d) <= m || s.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// reset forgets everything recorded. Records racing with it may land on either
// side.
func (h *hist) reset() {
	for i := range h.shards {
		s := &h.shards[i]
		for b := range s.counts {
			s.counts[b].Store(0)
		}
		s.max.Store(0)
	}
}

// Latency is a latency distribution, in milliseconds for the report.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *hist) snapshot() Latency {
	var counts [numBuckets]uint64
	var total uint64
	var maxV int64
	for i := range h.shards {
		s := &h.shards[i]
		for b := range s.counts {
			n := s.counts[b].Load()
			counts[b] += n
			total += n
		}
		maxV = max(maxV, s.max.Load())
	}
	l := Latency{Count: total, Max: ms(maxV)}
	if total == 0 {
		return l
	}
	pct := []struct {
		q   float64
		out *float64
	}{{0.50, &l.P50}, {0.90, &l.P90}, {0.99, &l.P99}, {0.999, &l.P999}}
	var seen uint64
	next := 0
	for b := range counts {
		seen += counts[b]
		for next < len(pct) && float64(seen) >= pct[next].q*float64(total) {
			*pct[next].out = ms(min(bucketValue(b), maxV))
			next++
		}
		if next == len(pct) {
			break
		}
	}
	return l
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }
