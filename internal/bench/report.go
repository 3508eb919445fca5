package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is what a run measured. Its JSON form is what `herald bench --json`
// prints; Print writes the same as a table.
type Report struct {
	Mode      Mode    `json:"mode"`
	URL       string  `json:"url"`
	Transport string  `json:"transport"`
	Codec     string  `json:"codec"`
	Admin     string  `json:"admin"`
	Duration  float64 `json:"duration_s"` // measured part, as it really lasted
	Warmup    float64 `json:"warmup_s"`

	Conns   ConnReport    `json:"connections"`
	Server  ServerReport  `json:"server"`
	Load    ProcessReport `json:"load_generator"`
	Machine MachineReport `json:"machine"`

	Idle    *IdleReport    `json:"idle,omitempty"`
	Fanout  *FanoutReport  `json:"fanout,omitempty"`
	Request *RequestReport `json:"request,omitempty"`

	// Notes say what makes the figures less than clean: a cut-short run, failed
	// connections, a busy machine.
	Notes []string `json:"notes,omitempty"`
}

// ConnReport says how many connections the run really had.
type ConnReport struct {
	Requested int `json:"requested"`
	// Opened counts connections that connected and finished their setup (the
	// subscribe, in idle and fanout).
	Opened      int               `json:"opened"`
	Failed      int               `json:"failed"`
	FailReasons map[string]uint64 `json:"fail_reasons,omitempty"`
	// Dropped counts opened connections lost before the run ended.
	Dropped     int64             `json:"dropped"`
	DropReasons map[string]uint64 `json:"drop_reasons,omitempty"`
	// FileLimit is the load generator's open-files limit after raising it.
	FileLimit   uint64   `json:"file_limit"`
	SourceAddrs []string `json:"source_addrs,omitempty"`
}

// ServerReport is the node's side, from its /api/stats.
type ServerReport struct {
	Node string `json:"node"`
	// CPUCores is the node's CPU time over the measured part divided by its
	// length: 1.0 is one core busy throughout.
	CPUCores float64     `json:"cpu_cores"`
	Before   ServerStats `json:"before"` // before the run (idle) or the measured part
	After    ServerStats `json:"after"`
}

// ProcessReport is the load generator's own cost, which on one machine comes out
// of the same cores as the node's.
type ProcessReport struct {
	CPUCores float64 `json:"cpu_cores"`
}

// MachineReport is the whole machine's CPU over the measured part, from /proc/stat.
type MachineReport struct {
	Cores     int     `json:"cores"`
	BusyCores float64 `json:"busy_cores"`
	// IRQCores is time in interrupt handlers, where the kernel moves loopback
	// traffic: part of the run's cost that neither process is charged for.
	IRQCores float64 `json:"irq_cores"`
	// OtherCores is busy time neither the node nor the load generator spent: when
	// it is high, something else shared the machine and the figures are not clean.
	OtherCores float64 `json:"other_cores"`
}

// IdleReport is what held connections cost the node.
type IdleReport struct {
	// Sessions is how many more sessions the node counted than before the run.
	Sessions          int64   `json:"sessions"`
	RSSDelta          int64   `json:"rss_delta_bytes"`
	HeapDelta         int64   `json:"heap_delta_bytes"`
	GoroutinesDelta   int     `json:"goroutines_delta"`
	RSSPerConn        float64 `json:"rss_bytes_per_conn"`
	HeapPerConn       float64 `json:"heap_bytes_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	// GCForced says the node collected garbage (through pprof's gc=1) before both
	// memory samples, so that the heap figures count live objects only.
	GCForced bool    `json:"gc_forced"`
	OpenTime float64 `json:"open_s"` // to open and subscribe every connection
}

// FanoutReport is the publish and delivery side of a fanout run.
type FanoutReport struct {
	Subscribers int     `json:"subscribers"`
	Topics      int     `json:"topics"`
	Size        int     `json:"size_bytes"`
	TargetRate  float64 `json:"target_rate"` // messages/s; 0: as fast as the node takes
	InFlight    int     `json:"in_flight,omitempty"`

	Published      uint64            `json:"published"` // acknowledged, warmup included
	PublishErrors  uint64            `json:"publish_errors"`
	PublishReasons map[string]uint64 `json:"publish_error_reasons,omitempty"`
	PublishRate    float64           `json:"publish_rate"` // over the measured part

	Deliveries         uint64  `json:"deliveries"` // warmup and drain included
	ExpectedDeliveries uint64  `json:"expected_deliveries"`
	DeliveriesPerSec   float64 `json:"deliveries_per_s"` // over the measured part
	// DeliveriesPerServerCPU is deliveries per second of the node's CPU time.
	DeliveriesPerServerCPU float64 `json:"deliveries_per_server_cpu_s"`
	// Lost counts messages a subscriber should have had (published after it
	// subscribed, acknowledged) and never received, by offset in its topic;
	// Duplicated counts offsets received more than once.
	Lost       uint64  `json:"lost"`
	Duplicated uint64  `json:"duplicated"`
	Latency    Latency `json:"latency"` // publish call to delivery, measured part only
}

// RequestReport is the request mode's answers.
type RequestReport struct {
	Route      string            `json:"route"`
	Clients    int               `json:"clients"`
	TargetRate float64           `json:"target_rate"` // requests/s; 0: closed loop
	Sent       uint64            `json:"sent"`        // over the measured part
	OK         uint64            `json:"ok"`
	Failed     uint64            `json:"failed"`
	Errors     map[string]uint64 `json:"errors,omitempty"` // by code, over the measured part
	OKPerSec   float64           `json:"ok_per_s"`
	Latency    Latency           `json:"latency"` // successful requests
}

// WriteJSON writes r as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Print writes r as a table.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, a...)) }
	head := func(s string) { fmt.Fprintf(tw, "%s\n", s) }

	head(fmt.Sprintf("herald bench %s — %s %s/%s, measured %.1f s after %.1f s warmup",
		r.Mode, r.URL, r.Transport, r.Codec, r.Duration, r.Warmup))
	c := r.Conns
	head("connections")
	row("requested", "%d", c.Requested)
	row("opened", "%d%s", c.Opened, map[bool]string{true: "", false: "   <- FEWER THAN REQUESTED"}[c.Opened == c.Requested])
	if c.Failed > 0 {
		row("failed", "%d  (%s)", c.Failed, reasons(c.FailReasons))
	}
	row("dropped during run", "%d%s", c.Dropped, parens(reasons(c.DropReasons)))
	row("open-files limit", "%d", c.FileLimit)
	if len(c.SourceAddrs) > 0 {
		row("source addresses", "%s … %s (%d)", c.SourceAddrs[0], c.SourceAddrs[len(c.SourceAddrs)-1], len(c.SourceAddrs))
	}

	if x := r.Idle; x != nil {
		head("idle (node memory per held connection)")
		row("sessions held", "%d", x.Sessions)
		row("RSS", "%s per connection  (%+.1f MiB in all)", bytesStr(x.RSSPerConn), float64(x.RSSDelta)/(1<<20))
		gc := ""
		if x.GCForced {
			gc = ", after a forced GC"
		}
		row("Go heap", "%s per connection  (%+.1f MiB%s)", bytesStr(x.HeapPerConn), float64(x.HeapDelta)/(1<<20), gc)
		row("goroutines", "%.3f per connection  (%+d)", x.GoroutinesPerConn, x.GoroutinesDelta)
		row("node CPU while idle", "%.1f%% of a core", 100*r.Server.CPUCores)
		row("time to open", "%.2f s", x.OpenTime)
	}
	if x := r.Fanout; x != nil {
		head("fanout")
		rate := "as fast as the node takes"
		if x.TargetRate > 0 {
			rate = fmt.Sprintf("%.0f msg/s", x.TargetRate)
		} else if x.InFlight > 0 {
			rate += fmt.Sprintf(" (%d in flight per topic)", x.InFlight)
		}
		row("load", "%d subscribers on %d topic(s), %d-byte payloads, %s", x.Subscribers, x.Topics, x.Size, rate)
		row("published", "%d  (%.0f msg/s measured)%s", x.Published, x.PublishRate, errs(x.PublishErrors, x.PublishReasons))
		row("deliveries/s", "%s", count(x.DeliveriesPerSec))
		row("deliveries", "%d of %d expected", x.Deliveries, x.ExpectedDeliveries)
		row("lost / duplicated", "%d / %d", x.Lost, x.Duplicated)
		latency(row, x.Latency)
		row("deliveries per node CPU-second", "%s", count(x.DeliveriesPerServerCPU))
	}
	if x := r.Request; x != nil {
		head("request")
		rate := "closed loop"
		if x.TargetRate > 0 {
			rate = fmt.Sprintf("%.0f req/s", x.TargetRate)
		}
		row("load", "%d clients calling %s, %s", x.Clients, x.Route, rate)
		row("answered ok", "%d  (%.0f/s)", x.OK, x.OKPerSec)
		row("failed", "%d%s", x.Failed, parens(reasons(x.Errors)))
		latency(row, x.Latency)
	}
	head("cpu (cores busy over the measured part)")
	row("node", "%.2f", r.Server.CPUCores)
	row("load generator", "%.2f", r.Load.CPUCores)
	if r.Machine.Cores > 0 {
		row("kernel interrupts (loopback)", "%.2f", r.Machine.IRQCores)
		row("whole machine", "%.2f of %d  (other processes: %.2f)", r.Machine.BusyCores, r.Machine.Cores, r.Machine.OtherCores)
	}
	a := r.Server.After
	head("node " + a.Node)
	row("sessions / topics", "%d / %d", a.Sessions, a.Topics)
	row("RSS / heap", "%.1f / %.1f MiB", float64(a.RSSBytes)/(1<<20), float64(a.HeapBytes)/(1<<20))
	row("goroutines", "%d", a.Goroutines)
	row("slow consumers / dropped", "%d / %d", a.SlowConsumers, a.Dropped)
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	return tw.Flush()
}

func latency(row func(k, format string, a ...any), l Latency) {
	if l.Count == 0 {
		row("latency", "no samples")
		return
	}
	row("latency p50 / p90 / p99", "%s / %s / %s", msStr(l.P50), msStr(l.P90), msStr(l.P99))
	row("latency p99.9 / max", "%s / %s  (%d samples)", msStr(l.P999), msStr(l.Max), l.Count)
}

func msStr(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.0f µs", v*1000)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func bytesStr(v float64) string {
	if v >= 1024 || v <= -1024 {
		return fmt.Sprintf("%.2f KiB", v/1024)
	}
	return fmt.Sprintf("%.0f B", v)
}

func count(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func reasons(m map[string]uint64) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func parens(s string) string {
	if s == "" {
		return ""
	}
	return "  (" + s + ")"
}

func errs(n uint64, m map[string]uint64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d failed (%s)", n, reasons(m))
}
