package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestRunUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, "Usage"},
		{[]string{"help"}, 0, "herald serve"},
		{[]string{"version"}, 0, "herald "},
		{[]string{"fly"}, 2, `unknown command "fly"`},
		{[]string{"serve", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"serve", "extra"}, 2, "unexpected argument"},
		{[]string{"serve", "--client-addr", "nowhere"}, 2, "listen.client"},
		{[]string{"serve", "--config", "/does/not/exist.yaml"}, 2, "exist.yaml"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := run(c.args, &out, &errOut)
		if code != c.code || !strings.Contains(out.String()+errOut.String(), c.out) {
			t.Errorf("herald %v: exit %d, output %q; want exit %d containing %q", c.args, code, out.String()+errOut.String(), c.code, c.out)
		}
	}
}

// TestServeAndStop builds the binary, runs "herald serve" on free loopback ports
// with a config file, talks to it over WebSocket and the admin API, then stops it
// with SIGTERM and expects exit status 0.
func TestServeAndStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfgFile := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfgFile, []byte("node: cli-test\ndrain:\n  timeout: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfgFile,
		"--client-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "HERALD_GATEWAY__HEARTBEAT_INTERVAL=7s", "HERALD_LISTEN__GRPC=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	// The node logs its bound addresses once it serves.
	serving := regexp.MustCompile(`msg="herald node serving".* client=(\S+) .* admin=(\S+)`)
	lines := bufio.NewScanner(stderr)
	var client, admin string
	for lines.Scan() {
		if m := serving.FindStringSubmatch(lines.Text()); m != nil {
			client, admin = m[1], m[2]
			break
		}
	}
	if client == "" {
		t.Fatal("node never reported serving")
	}
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stderr)
		rest <- string(b)
	}()

	conn, _, _, err := ws.Dial(ctx, "ws://"+client+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := wsutil.WriteClientText(conn, []byte(`{"op":"connect","id":1,"user":"cli"}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := wsutil.ReadServerText(conn)
	if err != nil {
		t.Fatal(err)
	}
	var hello struct {
		Op          string `json:"op"`
		Node        string `json:"node"`
		HeartbeatMs int    `json:"heartbeat_ms"`
	}
	if err := json.Unmarshal(msg, &hello); err != nil || hello.Op != "connected" || hello.Node != "cli-test" || hello.HeartbeatMs != 7000 {
		t.Fatalf("connected: %s (%v)", msg, err)
	}
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The client is told to reconnect elsewhere before the node exits.
	msg, err = wsutil.ReadServerText(conn)
	if err != nil || !strings.Contains(string(msg), `"op":"disconnect"`) || !strings.Contains(string(msg), `"reconnect":true`) {
		t.Fatalf("after SIGTERM: %s (%v)", msg, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, <-rest)
	}
	if log := <-rest; !strings.Contains(log, "herald node stopped") {
		t.Fatalf("no stop line in log:\n%s", log)
	}
}
