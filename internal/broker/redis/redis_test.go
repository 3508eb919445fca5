package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/brokertest"
	"github.com/heraldgg/herald/internal/broker/redis"
	"github.com/heraldgg/herald/internal/broker/redis/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is a config for srv with fault detection fast enough for tests.
func testConfig(srv *redistest.Server) redis.Config {
	return redis.Config{
		Address:        srv.URL(),
		HistorySize:    50,
		ProbeInterval:  100 * time.Millisecond,
		ProbeTimeout:   500 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
		DialTimeout:    time.Second,
		ReconnectWait:  50 * time.Millisecond,
	}
}

func newBroker(t testing.TB, cfg redis.Config, node string) *redis.Broker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	b, err := redis.New(cfg, node, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	brokertest.Run(t, brokertest.Factory{
		New: func(t testing.TB, node string) broker.Broker {
			return newBroker(t, testConfig(srv), node)
		},
		Shared:      true,
		HistorySize: 50,
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  redis.Config
		node string
	}{
		{"bad url", redis.Config{Address: "http://x"}, "n"},
		{"negative history", redis.Config{HistorySize: -1}, "n"},
		{"brace in prefix", redis.Config{Prefix: "a{b"}, "n"},
		{"empty node", redis.Config{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := redis.New(tc.cfg, tc.node, nil); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

// BenchmarkPublish measures publishes through the script, concurrent callers
// pipelined on rueidis's connections, to one topic and spread over many.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	br := newBroker(b, redis.Config{Address: srv.URL()}, "bench")
	if err := br.Start(context.Background(), brokertest.NewRecorder()); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64)
	for _, spread := range []int{1, 1024} {
		b.Run(fmt.Sprintf("topics=%d", spread), func(b *testing.B) {
			b.SetParallelism(16)
			var n atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					topic := fmt.Sprint("bench.", n.Add(1)%uint64(spread))
					if _, err := br.Publish(context.Background(), topic, data, broker.PublishOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
