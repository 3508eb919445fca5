package bench_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every run closes its clients and publishers before it returns, and every node
// stops with its test: anything left running is a leak. nbio keeps one
// process-wide task pool of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"),
	)
}
