package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/heraldgg/herald/"

// rank orders the packages as ARCHITECTURE.md's table does: a package may import
// only packages of a higher rank (further down the table), plus protocol.
var rank = map[string]int{
	"cmd/herald":                0,
	"internal/server":           1,
	"internal/config":           2,
	"internal/bench":            3,
	"internal/admin":            4,
	"internal/api":              5,
	"internal/gateway":          6,
	"internal/hub":              7,
	"internal/hub/aoi":          8,
	"internal/router":           9,
	"internal/router/balancer":  9,
	"internal/session":          10,
	"internal/transport":        11,
	"internal/broker":           12,
	"internal/broker/memory":    12,
	"internal/broker/redis":     12,
	"internal/broker/nats":      12,
	"internal/discovery":        13,
	"internal/discovery/static": 13,
	"internal/discovery/etcd":   13,
	"internal/limit":            14,
	"internal/breaker":          15,
	"internal/metrics":          16,
}

// implementations may be imported only by the packages that pick one.
var implementations = []string{
	"internal/broker/memory", "internal/broker/redis", "internal/broker/nats",
	"internal/discovery/static", "internal/discovery/etcd",
}

// pickers build a node (server), or declare the one configuration tree that
// embeds each implementation's Config (config), or register a game service
// (service registers itself in etcd).
var pickers = []string{"internal/server", "internal/config", "service"}

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "github.com/heraldgg/herald/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// base maps a package to the table row it belongs to: subpackages used only as
// test helpers (…test) belong to their parent.
func base(path string) string {
	for {
		if _, ok := rank[path]; ok {
			return path
		}
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			return path
		}
		path = path[:i]
	}
}

func TestImportDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		from := strings.TrimPrefix(p.ImportPath, mod)
		for _, imp := range p.Imports {
			to, ok := strings.CutPrefix(imp, mod)
			if !ok {
				continue
			}
			check(t, from, to)
		}
	}
}

func check(t *testing.T, from, to string) {
	t.Helper()
	switch {
	case strings.HasPrefix(from, "internal/") && strings.HasSuffix(from, "test"):
		return // test helpers start what they test
	case from == "protocol" || strings.HasPrefix(from, "protocol/"):
		t.Errorf("protocol must import nothing of Herald's, imports %s", to)
		return
	case from == "client":
		if to != "protocol" {
			t.Errorf("client may import only protocol, imports %s", to)
		}
		return
	case strings.HasPrefix(from, "examples/"):
		if strings.HasPrefix(to, "internal/") {
			t.Errorf("%s is an example and may import only public packages, imports %s", from, to)
		}
		return
	}
	if to == "protocol" {
		return
	}
	if slices.Contains(implementations, to) && !slices.Contains(pickers, from) && base(from) != base(to) {
		t.Errorf("%s imports the implementation %s; only %v may", from, to, pickers)
	}
	if (from == "internal/hub" && strings.HasPrefix(to, "internal/router")) ||
		(strings.HasPrefix(from, "internal/router") && strings.HasPrefix(to, "internal/hub")) {
		t.Errorf("hub and router must not import each other: %s imports %s", from, to)
	}
	if from == "internal/transport" && to == "internal/session" {
		t.Errorf("transport must not import session")
	}
	rf, okf := rank[base(from)]
	rt, okt := rank[base(to)]
	if okf && okt && rt < rf {
		t.Errorf("%s (row %d) imports %s (row %d), which is above it", from, rf, to, rt)
	}
}
