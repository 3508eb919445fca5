package server

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/hub"
	heraldmetrics "github.com/heraldgg/herald/internal/metrics"
)

// Stats is what GET /api/stats reports.
type Stats struct {
	Node          string  `json:"node"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Connections counts open client connections, connected or still in handshake.
	Connections uint64 `json:"connections"`
	// Sessions counts connected sessions.
	Sessions int64 `json:"sessions"`
	// Topics counts topics with at least one subscriber on this node.
	Topics int `json:"topics"`
	// MessagesIn counts frames received from clients.
	MessagesIn uint64 `json:"messages_in"`
	// MessagesOut counts frames queued to sessions (deliveries).
	MessagesOut   uint64 `json:"messages_out"`
	Published     uint64 `json:"published"`
	BadFrames     uint64 `json:"bad_frames"`
	SlowConsumers uint64 `json:"slow_consumers"`
	Dropped       uint64 `json:"dropped"`
	Conflated     uint64 `json:"conflated"`
	// Maps gives each map's sessions and counters, by name.
	Maps map[string]hub.MapStats `json:"maps"`
	// RSSBytes is the process's resident memory.
	RSSBytes uint64 `json:"rss_bytes"`
	// HeapBytes is memory held by live and not yet swept Go objects.
	HeapBytes  uint64 `json:"heap_bytes"`
	Goroutines int    `json:"goroutines"`
	// CPUSeconds is the process's user plus system CPU time so far; sample it twice
	// to get a CPU rate.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// Stats reports the node's counters and memory.
func (s *Server) Stats() Stats {
	hs := s.hub.Stats()
	gs := s.gw.Stats()
	st := Stats{
		Node:          s.cfg.Node,
		UptimeSeconds: time.Since(s.started).Seconds(),
		Connections:   gs.Connections,
		Sessions:      hs.Connections,
		Topics:        hs.Topics,
		MessagesIn:    gs.FramesIn,
		MessagesOut:   hs.Delivered,
		Published:     gs.Published,
		BadFrames:     gs.BadFrames,
		SlowConsumers: hs.SlowConsumer,
		Dropped:       hs.Dropped,
		Conflated:     hs.Conflated,
		Maps:          s.hub.MapStats(),
		RSSBytes:      rss(),
		Goroutines:    runtime.NumGoroutine(),
		CPUSeconds:    cpuSeconds(),
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		st.HeapBytes = sample[0].Value.Uint64()
	}
	return st
}

func (s *Server) metricsSnapshot() heraldmetrics.Snapshot {
	hs := s.hub.Stats()
	gs := s.gw.Stats()
	var bs broker.Counters
	if c, ok := s.broker.(broker.Counted); ok {
		bs = c.Stats()
	}
	return heraldmetrics.Snapshot{
		Connections:   float64(gs.Connections),
		Sessions:      float64(hs.Connections),
		Topics:        float64(hs.Topics),
		FramesIn:      float64(gs.FramesIn),
		BadFrames:     float64(gs.BadFrames),
		Published:     float64(gs.Published),
		Delivered:     float64(hs.Delivered),
		SlowConsumers: float64(hs.SlowConsumer),
		Dropped:       float64(hs.Dropped),
		Conflated:     float64(hs.Conflated),
		EventsDropped: float64(gs.EventsDropped),

		BrokerReconnects:    float64(bs.Reconnects),
		BrokerProbeFailures: float64(bs.ProbeFailures),
		BrokerFilled:        float64(bs.Filled),
		BrokerJumps:         float64(bs.Jumps),
		BrokerRollbacks:     float64(bs.Rollbacks),
		BrokerConflicts:     float64(bs.Conflicts),
	}
}

// rss reads the resident set from /proc, which unlike the Go runtime's figures
// counts everything the process holds, event-loop buffers and C memory included.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// cpuSeconds reads the process's user and system time from /proc (clock ticks of
// 1/100 s on Linux).
func cpuSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; fields resume after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := bytes.Fields(b[i+1:])
	// After ")" come state(3) … utime(14) stime(15): indices 11 and 12 here.
	if len(fields) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(string(fields[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return float64(ut+st) / 100
}
