package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(Sources{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Client != ":7000" || cfg.Listen.TCP != ":7001" || cfg.Listen.Admin != "127.0.0.1:7070" || cfg.Listen.WebSocketPath != "/ws" {
		t.Errorf("listen = %+v", cfg.Listen)
	}
	if cfg.Gateway.HeartbeatInterval != 30*time.Second || cfg.Transport.MaxFrameSize != 64<<10 || cfg.Broker.Memory.HistorySize != 300 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	if cfg.Node == "" {
		t.Error("node name not filled")
	}
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "herald.yaml")
	yaml := `
node: a
listen:
  client: "127.0.0.1:9000"
gateway:
  heartbeat_interval: 10s
  client_publish: ["chat.*", "lobby.*"]
session:
  max_queue_bytes: 200000
discovery:
  static:
    services:
      demo:
        - id: d1
          addr: 127.0.0.1:9100
          weight: 2
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Sources{
		File: file,
		Environ: []string{
			"HERALD_GATEWAY__HEARTBEAT_INTERVAL=20s",
			"HERALD_HUB__LOSSY_TOPICS=pos.*,fx.*",
			"OTHER_THING=1",
		},
		Overrides: map[string]any{"listen.client": "127.0.0.1:9001", "node": "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats file", cfg.Listen.Client, "127.0.0.1:9001"},
		{"flag node", cfg.Node, "b"},
		{"env beats file", cfg.Gateway.HeartbeatInterval, 20 * time.Second},
		{"file list", strings.Join(cfg.Gateway.ClientPublish, " "), "chat.* lobby.*"},
		{"env list", strings.Join(cfg.Hub.LossyTopics, " "), "pos.* fx.*"},
		{"file int", cfg.Session.MaxQueueBytes, 200000},
		{"default kept", cfg.Listen.TCP, ":7001"},
		{"static instance", cfg.Discovery.Static.Services["demo"][0].Addr, "127.0.0.1:9100"},
		{"static weight", cfg.Discovery.Static.Services["demo"][0].Weight, 2},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		env     []string
		wantSub string
	}{
		{"unknown key", "gateway:\n  heartbeat_intervall: 3s\n", nil, "heartbeat_intervall"},
		{"unknown env key", "", []string{"HERALD_GATEWAY__NOPE=1"}, "nope"},
		{"bad duration", "gateway:\n  heartbeat_interval: soon\n", nil, "heartbeat_interval"},
		{"bad address", "listen:\n  client: nowhere\n", nil, "listen.client"},
		{"bad log level", "log:\n  level: loud\n", nil, "log.level"},
		{"bad broker", "broker:\n  url: kafka://x\n", nil, "broker.url"},
		{"bad anonymous", "gateway:\n  anonymous: maybe\n", nil, "anonymous"},
		{"queue below frame", "session:\n  max_queue_bytes: 1000\n", nil, "session.max_queue_bytes"},
		{"ws path root", "listen:\n  websocket_path: /\n", nil, "listen.websocket_path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := Sources{Environ: c.env}
			if src.Environ == nil {
				src.Environ = []string{}
			}
			if c.yaml != "" {
				src.File = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(src.File, []byte(c.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(src)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.wantSub) {
				t.Errorf("err = %v, want it to name %q", err, c.wantSub)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(Sources{File: filepath.Join(t.TempDir(), "nope.yaml")}); err == nil {
		t.Fatal("missing file accepted")
	}
}

// TestEveryKeyDocumented keeps "every key has a documented default" true.
func TestEveryKeyDocumented(t *testing.T) {
	keys, err := Keys("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Doc == "" {
			t.Errorf("%s has no doc comment", k.Path)
		}
		if !k.Section && k.Env != "" && !strings.Contains(strings.ToLower(k.Doc), "default") {
			t.Errorf("%s: doc comment does not state its default: %q", k.Path, k.Doc)
		}
	}
}

// TestConfigurationDoc fails when docs/configuration.md is stale; run
// "make docs" (go test ./internal/config -run TestConfigurationDoc -update) to refresh it.
func TestConfigurationDoc(t *testing.T) {
	got, err := Render("../..")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if string(want) != string(got) {
		t.Fatal("docs/configuration.md is stale: run make docs")
	}
}

func TestLoadRouter(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.yaml")
	yaml := `
listen:
  grpc: "off"
router:
  services:
    room:
      timeout: 2s
      idempotent: ["get"]
      balancer:
        policy: hash
      breaker:
        cooldown: 1500ms
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Sources{File: file, Environ: []string{"HERALD_LISTEN__DEMO_SERVICE=off"}})
	if err != nil {
		t.Fatal(err)
	}
	room := cfg.Router.Services["room"]
	if room.Timeout != 2*time.Second || room.Breaker.Cooldown != 1500*time.Millisecond ||
		string(room.Balancer.Policy) != "hash" || len(room.Idempotent) != 1 {
		t.Errorf("router.services.room = %+v", room)
	}
	if cfg.Listen.GRPC != "off" || cfg.Listen.DemoService != "off" {
		t.Errorf("listen = %+v", cfg.Listen)
	}
	d, err := Load(Sources{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Listen.GRPC != "127.0.0.1:7071" || d.Listen.DemoService != "127.0.0.1:0" {
		t.Errorf("default listen = %+v", d.Listen)
	}

	for name, bad := range map[string]string{
		"router.services": "router:\n  services:\n    room:\n      protocol: smtp\n",
		"listen.grpc":     "listen:\n  grpc: nowhere\n",
		"discovery.etcd":  "discovery:\n  kind: etcd\n  etcd:\n    prefix: no-slash\n",
	} {
		f := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(Sources{File: f, Environ: []string{}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), strings.Split(name, ".")[0]) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
