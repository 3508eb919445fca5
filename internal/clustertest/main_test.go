package clustertest

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every node, client and broker a test starts is stopped by its cleanup;
// anything still running afterwards is a leak. nbio keeps one process-wide
// task pool of its own.
func TestMain(m *testing.M) {
	code := m.Run()
	// The publisher's transport may keep a spare connection to an admin API
	// that a node's Shutdown leaves open.
	adminHTTP.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3")); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
