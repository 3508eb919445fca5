package demo_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// BenchmarkEcho measures a request/response round trip to the in-process demo
// service's echo, through a Herald node (client SDK → WebSocket or TCP → gateway
// → router → gRPC → demo) and directly (gRPC → demo, over one connection as the
// router uses), with 1 and 1,000 concurrent clients each keeping one request in
// flight. The difference is what Herald adds. It reports the requests per second
// and the p50 and p99 latency in µs; ns/op is wall time per request across all
// clients. Load generator, node and service share the machine's cores.
func BenchmarkEcho(b *testing.B) {
	n := servertest.Start(b, func(c *config.Config) {
		// The load is the point here: no per-session rate limit.
		c.Gateway.MessageRate = 1e9
		c.Gateway.MessageBurst = 1 << 30
	})
	conn, err := grpc.NewClient(n.DemoAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	direct := protocol.NewGameServiceClient(conn)
	data := make([]byte, 64)

	for _, clients := range []int{1, 1000} {
		b.Run(fmt.Sprintf("direct/clients=%d", clients), func(b *testing.B) {
			measure(b, clients, func(ctx context.Context, _ int) error {
				_, err := direct.Request(ctx, &protocol.RequestMsg{Route: "demo.echo", Session: "s", User: "u", Data: data})
				return err
			})
		})
		for _, via := range []string{"ws", "tcp"} {
			// Dialled once, outside the timed runs, and reused by every round of b.N.
			cs := dialMany(b, n, via, clients)
			b.Run(fmt.Sprintf("herald-%s/clients=%d", via, clients), func(b *testing.B) {
				measure(b, clients, func(ctx context.Context, i int) error {
					_, err := cs[i].Request(ctx, "demo.echo", data, nil)
					return err
				})
			})
		}
	}
}

// dialMany connects count clients with the Protobuf codec, closed when the
// benchmark ends.
func dialMany(b *testing.B, n *servertest.Node, via string, count int) []*client.Client {
	b.Helper()
	url := n.WS
	if via == "tcp" {
		url = n.TCP
	}
	cs := make([]*client.Client, count)
	for i := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, client.Config{URL: url, Codec: protocol.CodecProto, User: fmt.Sprintf("u%d", i), MaxRetries: -1})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		cs[i] = c
	}
	b.Cleanup(func() {
		for _, c := range cs {
			_ = c.Close()
		}
	})
	return cs
}

// measure runs b.N calls from clients goroutines (call gets the goroutine's
// index) and reports throughput and latency percentiles.
func measure(b *testing.B, clients int, call func(ctx context.Context, i int) error) {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	ctx := context.Background()
	var wg sync.WaitGroup
	b.ResetTimer()
	begin := time.Now()
	for c := range clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t := time.Now()
				if err := call(ctx, c); err != nil {
					if failed.Add(1) == 1 {
						b.Error(err)
					}
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Nanoseconds()) / 1e3 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
