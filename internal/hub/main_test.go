package hub

import (
	"testing"

	"go.uber.org/goleak"
)

// Every hub a test starts is closed by its cleanup, which waits for the shard
// and map workers; anything still running afterwards is a leak. nbio, which
// the transport brings in, keeps one process-wide task pool of its own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}
