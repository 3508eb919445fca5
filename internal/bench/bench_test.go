package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/bench"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// run runs cfg against n with short phases and fails the test on an error.
func run(t *testing.T, n *servertest.Node, cfg bench.Config) *bench.Report {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = n.WS
		if cfg.Transport == "tcp" {
			cfg.URL = n.TCP
		}
	}
	cfg.Admin = n.Admin
	cfg.Duration = orDur(cfg.Duration, time.Second)
	cfg.Warmup = orDur(cfg.Warmup, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := bench.Run(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Every report must print and encode, whatever its mode.
	var out bytes.Buffer
	if err := r.Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "herald bench "+string(cfg.Mode)) {
		t.Errorf("table lacks its title:\n%s", out.String())
	}
	out.Reset()
	if err := r.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out.String())
	}
	t.Logf("%s", out.String())
	return r
}

func orDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func checkConns(t *testing.T, r *bench.Report, want int) {
	t.Helper()
	c := r.Conns
	if c.Requested != want || c.Opened != want || c.Failed != 0 || c.Dropped != 0 {
		t.Errorf("connections: requested %d, opened %d, failed %d (%v), dropped %d (%v); want all %d open",
			c.Requested, c.Opened, c.Failed, c.FailReasons, c.Dropped, c.DropReasons, want)
	}
}

func TestFanout(t *testing.T) {
	cases := []struct {
		name string
		cfg  bench.Config
	}{
		{"ws-json-closed-loop", bench.Config{Conns: 20}},
		{"tcp-proto-paced-3-topics", bench.Config{Conns: 20, Topics: 3, Rate: 300, Transport: "tcp", Codec: protocol.CodecProto, Size: 200}},
		// 20 connections over 127.0.0.2…127.0.0.4, 7 each.
		{"ws-proto-spread-sources", bench.Config{Conns: 20, PerSource: 7, Codec: protocol.CodecProto}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cfg.PerSource > 0 {
				// Linux routes all of 127/8 to loopback; other systems may not.
				ln, err := net.Listen("tcp", "127.0.0.2:0")
				if err != nil {
					t.Skipf("127.0.0.2 is not usable here: %v", err)
				}
				ln.Close()
			}
			n := servertest.Start(t, nil)
			c.cfg.Mode = bench.ModeFanout
			r := run(t, n, c.cfg)
			checkConns(t, r, c.cfg.Conns)
			x := r.Fanout
			if x == nil {
				t.Fatal("no fanout section")
			}
			if x.Published == 0 || x.PublishErrors != 0 {
				t.Fatalf("published %d, %d errors (%v)", x.Published, x.PublishErrors, x.PublishReasons)
			}
			// Every subscriber keeps up at this size, so each acknowledged message
			// reaches each subscriber of its topic exactly once.
			if x.Lost != 0 || x.Duplicated != 0 {
				t.Errorf("lost %d, duplicated %d; want none", x.Lost, x.Duplicated)
			}
			if x.Deliveries != x.ExpectedDeliveries {
				t.Errorf("deliveries %d, expected %d", x.Deliveries, x.ExpectedDeliveries)
			}
			if c.cfg.Topics <= 1 && x.Deliveries != x.Published*uint64(c.cfg.Conns) {
				t.Errorf("deliveries %d != published %d × %d subscribers", x.Deliveries, x.Published, c.cfg.Conns)
			}
			l := x.Latency
			if l.Count == 0 || !(l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) || l.P50 <= 0 {
				t.Errorf("latency not ordered or empty: %+v", l)
			}
			if x.DeliveriesPerSec <= 0 || x.PublishRate <= 0 {
				t.Errorf("rates: %.0f deliveries/s, %.0f publishes/s", x.DeliveriesPerSec, x.PublishRate)
			}
			if x.Subscribers != c.cfg.Conns || r.Server.After.Sessions < int64(c.cfg.Conns) {
				t.Errorf("subscribers %d, node sessions %d; want %d", x.Subscribers, r.Server.After.Sessions, c.cfg.Conns)
			}
			wantSources := 0
			if c.cfg.PerSource > 0 {
				wantSources = (c.cfg.Conns + c.cfg.PerSource - 1) / c.cfg.PerSource
			}
			if len(r.Conns.SourceAddrs) != wantSources {
				t.Errorf("source addresses %v; want %d", r.Conns.SourceAddrs, wantSources)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	n := servertest.Start(t, nil)
	r := run(t, n, bench.Config{Mode: bench.ModeIdle, Conns: 50, Topics: 2})
	checkConns(t, r, 50)
	x := r.Idle
	if x == nil {
		t.Fatal("no idle section")
	}
	if x.Sessions != 50 {
		t.Errorf("node gained %d sessions; want 50", x.Sessions)
	}
	if r.Server.After.Topics != 2 {
		t.Errorf("node has %d topics; want 2", r.Server.After.Topics)
	}
	for name, v := range map[string]float64{"rss": x.RSSPerConn, "heap": x.HeapPerConn, "goroutines": x.GoroutinesPerConn, "cpu": r.Server.CPUCores} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("%s per connection is %v", name, v)
		}
	}
	if x.RSSDelta != int64(r.Server.After.RSSBytes)-int64(r.Server.Before.RSSBytes) {
		t.Errorf("RSS delta %d does not match before %d and after %d", x.RSSDelta, r.Server.Before.RSSBytes, r.Server.After.RSSBytes)
	}
}

// The node's built-in demo service answers demo.echo.
func TestRequestEcho(t *testing.T) {
	n := servertest.Start(t, nil)
	r := run(t, n, bench.Config{Mode: bench.ModeRequest, Conns: 3, Rate: 150})
	checkConns(t, r, 3)
	x := r.Request
	if x == nil {
		t.Fatal("no request section")
	}
	if x.OK == 0 || x.Sent != x.OK+x.Failed || x.Latency.Count != x.OK || x.OKPerSec <= 0 {
		t.Fatalf("sent %d, ok %d (%.0f/s), failed %d (%v), %d latency samples",
			x.Sent, x.OK, x.OKPerSec, x.Failed, x.Errors, x.Latency.Count)
	}
}

// A route nobody serves still makes a run: it reports what the node answered.
func TestRequestUnservedRoute(t *testing.T) {
	n := servertest.Start(t, nil)
	r := run(t, n, bench.Config{Mode: bench.ModeRequest, Conns: 3, Route: "nobody.home"})
	checkConns(t, r, 3)
	x := r.Request
	if x == nil {
		t.Fatal("no request section")
	}
	if x.OK != 0 || x.Failed == 0 || x.Sent != x.OK+x.Failed {
		t.Fatalf("sent %d, ok %d, failed %d; want only failures", x.Sent, x.OK, x.Failed)
	}
	for code := range x.Errors {
		// Each failure is named by the node's wire code, e.g. "110 not found".
		if code == "" || code[0] < '1' || code[0] > '9' {
			t.Errorf("failure %q is not a wire code", code)
		}
	}
	if len(r.Notes) == 0 {
		t.Error("no note that no request succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  bench.Config
		want string
	}{
		{"no mode", bench.Config{}, "mode is required"},
		{"bad mode", bench.Config{Mode: "storm"}, "unknown mode"},
		{"bad transport", bench.Config{Mode: bench.ModeIdle, Transport: "udp"}, "unknown transport"},
		{"transport against URL", bench.Config{Mode: bench.ModeIdle, Transport: "tcp", URL: "ws://127.0.0.1:1/ws"}, "does not match"},
		{"bad scheme", bench.Config{Mode: bench.ModeIdle, URL: "http://127.0.0.1:1"}, "scheme"},
		{"tiny payload", bench.Config{Mode: bench.ModeFanout, Size: 10}, "below"},
		{"topics without subscribers", bench.Config{Mode: bench.ModeFanout, Conns: 2, Topics: 3}, "without subscribers"},
		{"negative", bench.Config{Mode: bench.ModeFanout, Rate: -1}, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := bench.Run(context.Background(), c.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || r != nil {
				t.Errorf("Run: report %v, error %v; want none and an error containing %q", r, err, c.want)
			}
		})
	}
}

// An admin API that does not answer leaves nothing to measure.
func TestNoAdmin(t *testing.T) {
	n := servertest.Start(t, nil)
	_, err := bench.Run(context.Background(), bench.Config{
		Mode: bench.ModeIdle, URL: n.WS, Admin: "http://127.0.0.1:1", Conns: 1,
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("Run: %v; want an admin error", err)
	}
}
