package clustertest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// expectReconnects checks that every node counted at least one reconnect to
// the broker in its herald_broker_reconnects_total metric.
func expectReconnects(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		if v := metric(t, n, "herald_broker_reconnects_total"); v < 1 {
			t.Errorf("node %s: herald_broker_reconnects_total is %v after the broker came back", n.name, v)
		}
	}
}

// metric reads the value of the series name, labelled only with the node, from
// n's /metrics.
func metric(t *testing.T, n *node, name string) float64 {
	t.Helper()
	resp, err := http.Get(n.admin + "/metrics")
	if err != nil {
		t.Fatalf("node %s: /metrics: %v", n.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("node %s: %q: %v", n.name, line, err)
		}
		return v
	}
	t.Fatalf("node %s: no %s in /metrics", n.name, name)
	return 0
}
