package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldgg/herald/protocol"
)

// Router metric names.
const (
	RouterRequests          = "herald_router_requests_total"
	RouterRequestDuration   = "herald_router_request_duration_seconds"
	RouterBreakerTransition = "herald_router_breaker_transitions_total"
)

// routerBuckets span what a request through Herald takes: from a loopback echo
// (~100 µs) to the default route timeout (5 s).
var routerBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Router counts what the router does. Its methods are the router's hooks; they
// are safe for concurrent use and do not block.
type Router struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	transitions *prometheus.CounterVec
}

// NewRouter registers the router's metrics in reg, labelled with the node's name.
func NewRouter(reg prometheus.Registerer, node string) *Router {
	constLabels := prometheus.Labels{"node": node}
	m := &Router{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        RouterRequests,
			Help:        "Client requests and notifies routed to game services, by service and the code the client got (\"ok\" for success).",
			ConstLabels: constLabels,
		}, []string{"service", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        RouterRequestDuration,
			Help:        "Time from a request reaching the router to its answer, retries included, by service.",
			ConstLabels: constLabels,
			Buckets:     routerBuckets,
		}, []string{"service"}),
		// Labelled by service and state only: instance IDs change with every
		// deployment, and the router logs which instance's circuit moved.
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        RouterBreakerTransition,
			Help:        "Circuit breaker state changes of game service instances, by service and the state entered.",
			ConstLabels: constLabels,
		}, []string{"service", "to"}),
	}
	reg.MustRegister(m.requests, m.duration, m.transitions)
	return m
}

// RequestDone counts one routed request. service is "" for a route that names
// no configured service; code is 0 for success.
func (m *Router) RequestDone(service string, code protocol.Code, elapsed time.Duration) {
	label := "ok"
	if code != 0 {
		label = code.String()
	}
	m.requests.WithLabelValues(service, label).Inc()
	m.duration.WithLabelValues(service).Observe(elapsed.Seconds())
}

// BreakerChanged counts one circuit breaker transition into state to (the
// breaker's state name: closed, half_open, open).
func (m *Router) BreakerChanged(service, to string) {
	m.transitions.WithLabelValues(service, to).Inc()
}
