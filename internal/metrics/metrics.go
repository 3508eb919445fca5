// Package metrics names Herald's Prometheus metrics and exposes a node's counters
// through a Collector that reads them when scraped, so the hot path only bumps
// atomics. There is no global registry: each node builds its own.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Snapshot is a node's counters at one instant.
type Snapshot struct {
	Connections   float64 // open client connections
	Sessions      float64 // connected sessions
	Topics        float64 // topics with local subscribers
	FramesIn      float64 // frames received from clients
	BadFrames     float64 // frames rejected as malformed
	Published     float64 // client publishes accepted
	Delivered     float64 // frames queued to sessions
	SlowConsumers float64 // sessions disconnected as slow consumers
	Dropped       float64 // lossy frames dropped
	Conflated     float64 // frames replaced by a newer one of the same entity
	EventsDropped float64 // session events not sent to game services (queue full)

	// The broker's counters (broker.Counters); 0 on the memory broker.
	BrokerReconnects    float64
	BrokerProbeFailures float64
	BrokerFilled        float64
	BrokerJumps         float64
	BrokerRollbacks     float64
	BrokerConflicts     float64
}

type collector struct {
	read  func() Snapshot
	descs []*prometheus.Desc
}

var specs = []struct {
	name, help string
	counter    bool
	get        func(Snapshot) float64
}{
	{"herald_connections", "Open client connections.", false, func(s Snapshot) float64 { return s.Connections }},
	{"herald_sessions", "Connected sessions.", false, func(s Snapshot) float64 { return s.Sessions }},
	{"herald_topics", "Topics with subscribers on this node.", false, func(s Snapshot) float64 { return s.Topics }},
	{"herald_frames_in_total", "Frames received from clients.", true, func(s Snapshot) float64 { return s.FramesIn }},
	{"herald_bad_frames_total", "Client frames rejected as malformed.", true, func(s Snapshot) float64 { return s.BadFrames }},
	{"herald_client_publishes_total", "Publishes by clients that were accepted.", true, func(s Snapshot) float64 { return s.Published }},
	{"herald_deliveries_total", "Frames queued to sessions.", true, func(s Snapshot) float64 { return s.Delivered }},
	{"herald_slow_consumers_total", "Sessions disconnected because they did not read fast enough.", true, func(s Snapshot) float64 { return s.SlowConsumers }},
	{"herald_dropped_total", "Frames dropped from lossy topics' full queues.", true, func(s Snapshot) float64 { return s.Dropped }},
	{"herald_conflated_total", "Queued frames replaced by a newer update of the same entity.", true, func(s Snapshot) float64 { return s.Conflated }},
	{"herald_session_events_dropped_total", "Session connect and disconnect events not sent to game services because too many were waiting.", true, func(s Snapshot) float64 { return s.EventsDropped }},
	{"herald_broker_reconnects_total", "Connections to the broker made again after the first.", true, func(s Snapshot) float64 { return s.BrokerReconnects }},
	{"herald_broker_probe_failures_total", "Broker liveness pings that did not come back in time (Redis).", true, func(s Snapshot) float64 { return s.BrokerProbeFailures }},
	{"herald_broker_filled_total", "Publications missed live and delivered from the broker's history.", true, func(s Snapshot) float64 { return s.BrokerFilled }},
	{"herald_broker_skips_total", "Times delivery skipped publications the broker's history no longer held.", true, func(s Snapshot) float64 { return s.BrokerJumps }},
	{"herald_broker_rollbacks_total", "History reads that found a topic behind what this node delivered: the broker lost acknowledged publications (Redis).", true, func(s Snapshot) float64 { return s.BrokerRollbacks }},
	{"herald_broker_conflicts_total", "Publishes retried because another node published to the topic first (NATS).", true, func(s Snapshot) float64 { return s.BrokerConflicts }},
}

// NewRegistry returns a registry holding Go runtime and process metrics and the
// node's counters, read through read at each scrape.
func NewRegistry(node string, read func() Snapshot) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c := &collector{read: read}
	for _, s := range specs {
		c.descs = append(c.descs, prometheus.NewDesc(s.name, s.help, nil, prometheus.Labels{"node": node}))
	}
	reg.MustRegister(c)
	return reg
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.read()
	for i, s := range specs {
		t := prometheus.GaugeValue
		if s.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[i], t, s.get(snap))
	}
}
