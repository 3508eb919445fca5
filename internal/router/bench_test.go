package router

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldgg/herald/protocol"
)

// benchTarget is one way of making a request to the echo service.
type benchTarget struct {
	name string
	call func(ctx context.Context, user string, data []byte) error
}

// benchTargets starts an echo instance and returns a direct gRPC client of it
// and the router in front of it, so the difference is what the router adds.
func benchTargets(b *testing.B) []benchTarget {
	b.Helper()
	s := startGame(b, &game{id: "a"})
	e := newEnv(b, roomConfig(ServiceConfig{MaxInFlight: 1 << 20}))
	e.register("room", "a", s.addr, nil)

	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	direct := protocol.NewGameServiceClient(conn)
	meta := map[string]string{"lang": "en"}
	return []benchTarget{
		{"direct", func(ctx context.Context, user string, data []byte) error {
			_, err := direct.Request(ctx, &protocol.RequestMsg{Route: "room.echo", Session: "s-" + user, User: user, Meta: meta, Data: data})
			return err
		}},
		// A direct call with the route's deadline: gRPC and the service pay for
		// deadline propagation, so this isolates what the router itself adds.
		{"direct-deadline", func(ctx context.Context, user string, data []byte) error {
			ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
			defer cancel()
			_, err := direct.Request(ctx, &protocol.RequestMsg{Route: "room.echo", Session: "s-" + user, User: user, Meta: meta, Data: data})
			return err
		}},
		{"router", func(ctx context.Context, user string, data []byte) error {
			_, err := e.r.Request(ctx, Request{Route: "room.echo", Session: "s-" + user, User: user, Meta: meta, Data: data})
			return err
		}},
	}
}

// BenchmarkRequest measures throughput (ns/op is per request across all
// goroutines) and allocations, calling the service directly and through the
// router.
func BenchmarkRequest(b *testing.B) {
	for _, tg := range benchTargets(b) {
		b.Run(tg.name, func(b *testing.B) {
			data := make([]byte, 64)
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if err := tg.call(ctx, "alice", data); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLatency reports the p50 and p99 of request latency with 1 and
// 1,000 concurrent clients, directly and through the router; the difference
// between the two is the latency the router adds.
func BenchmarkLatency(b *testing.B) {
	targets := benchTargets(b)
	for _, clients := range []int{1, 1000} {
		for _, tg := range targets {
			b.Run(tg.name+"/clients="+strconv.Itoa(clients), func(b *testing.B) {
				data := make([]byte, 64)
				lat := make([][]time.Duration, clients)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for c := range clients {
					wg.Go(func() {
						ctx, user := context.Background(), "u"+strconv.Itoa(c)
						for next.Add(1) <= int64(b.N) {
							begin := time.Now()
							if err := tg.call(ctx, user, data); err != nil {
								b.Error(err)
								return
							}
							lat[c] = append(lat[c], time.Since(begin))
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				all := slices.Concat(lat...)
				slices.Sort(all)
				if len(all) > 0 {
					b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				}
			})
		}
	}
}
