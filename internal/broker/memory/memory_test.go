package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/brokertest"
	"github.com/heraldgg/herald/internal/broker/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	brokertest.Run(t, brokertest.Factory{
		New: func(t testing.TB, node string) broker.Broker {
			return memory.New(memory.Config{HistorySize: 50}, node)
		},
		HistorySize: 50,
	})
}
