package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every node a test starts is stopped by the test's cleanup; anything still running
// afterwards is a leak. nbio keeps one process-wide task pool of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"),
	)
}
