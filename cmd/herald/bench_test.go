package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldgg/herald/internal/server/servertest"
)

func TestBenchFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"help", []string{"bench", "-h"}, 0, "--mode idle|fanout|request"},
		{"no mode", []string{"bench"}, 2, "mode is required"},
		{"unknown flag", []string{"bench", "--nope"}, 2, "flag provided but not defined"},
		{"bad codec", []string{"bench", "--mode", "idle", "--codec", "xml"}, 2, "unknown codec"},
		{"stray argument", []string{"bench", "--mode", "idle", "extra"}, 2, "unexpected argument"},
		{"no admin", []string{"bench", "--mode", "idle", "--admin", "http://127.0.0.1:1"}, 2, "--admin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(c.args, &out, &errOut)
			if code != c.code || !strings.Contains(out.String()+errOut.String(), c.out) {
				t.Errorf("herald %v: exit %d, output %q; want exit %d containing %q",
					c.args, code, out.String()+errOut.String(), c.code, c.out)
			}
		})
	}
}

// TestBenchFanout runs the subcommand against a real node and reads its JSON.
func TestBenchFanout(t *testing.T) {
	n := servertest.Start(t, nil)
	var out, errOut bytes.Buffer
	code := run([]string{"bench", "--mode", "fanout", "--url", n.TCP, "--admin", n.Admin,
		"--conns", "5", "--codec", "protobuf", "--duration", "500ms", "--warmup", "0s", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep struct {
		Mode        string
		Transport   string
		Codec       string
		Warmup      float64 `json:"warmup_s"`
		Connections struct{ Opened int }
		Fanout      struct {
			Published, Deliveries, Lost, Duplicated uint64
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	f := rep.Fanout
	if rep.Mode != "fanout" || rep.Transport != "tcp" || rep.Codec != "protobuf" || rep.Warmup != 0 ||
		rep.Connections.Opened != 5 || f.Published == 0 || f.Deliveries != 5*f.Published || f.Lost != 0 || f.Duplicated != 0 {
		t.Errorf("report: %+v\n%s", rep, out.String())
	}
}
