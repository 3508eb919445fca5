package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable Herald reads.
const EnvPrefix = "HERALD_"

// Sources are where Load reads settings from, lowest precedence first.
type Sources struct {
	// File is a YAML file; empty means none.
	File string
	// Environ is the environment as KEY=value pairs; nil means os.Environ().
	Environ []string
	// Overrides are settings given on the command line, by key path
	// ("listen.client"), applied last.
	Overrides map[string]any
}

// Load builds the configuration from defaults and src, fills the node name and
// validates the result. Unknown keys in the file or environment are errors, so a
// misspelt setting is never silently ignored.
func Load(src Sources) (Config, error) {
	k := koanf.New(".")
	if src.File != "" {
		if err := k.Load(file.Provider(src.File), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", src.File, err)
		}
	}
	environ := src.Environ
	if environ == nil {
		environ = os.Environ()
	}
	envProvider := env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		EnvironFunc:   func() []string { return environ },
		TransformFunc: envKey,
	})
	if err := k.Load(envProvider, nil); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}
	for key, v := range src.Overrides {
		if err := k.Set(key, v); err != nil {
			return Config{}, fmt.Errorf("config: flag %s: %w", key, err)
		}
	}

	cfg := Default()
	// Declared maps replace the demo map rather than join it (applyDefaults puts
	// it back when none are declared); decoding into a filled map would merge.
	cfg.Hub.Maps = nil
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				mapstructure.StringToTimeDurationHookFunc(),
				mapstructure.StringToSliceHookFunc(","),
				mapstructure.TextUnmarshallerHookFunc(),
			),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
			TagName:          "koanf",
		},
	})
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	cfg.applyDefaults()
	cfg.fillNode()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// envKey maps HERALD_GATEWAY__HEARTBEAT_INTERVAL to gateway.heartbeat_interval.
func envKey(k, v string) (string, any) {
	k = strings.TrimPrefix(k, EnvPrefix)
	if k == "" {
		return "", nil
	}
	return strings.ReplaceAll(strings.ToLower(k), "__", "."), v
}

// applyDefaults gives zero settings their defaults: in every section, 0 or an
// empty value means "the default", so a file only names what it changes.
func (c *Config) applyDefaults() {
	d := Default()
	c.Transport = c.Transport.WithDefaults()
	c.Session = c.Session.WithDefaults()
	c.Hub = c.Hub.WithDefaults()
	c.Gateway = c.Gateway.WithDefaults()
	c.Admin = c.Admin.WithDefaults()
	c.Broker.Memory = c.Broker.Memory.WithDefaults()
	c.Broker.Redis = c.Broker.Redis.WithDefaults()
	c.Broker.NATS = c.Broker.NATS.WithDefaults()
	c.Discovery.Etcd = c.Discovery.Etcd.WithDefaults()
	if c.Listen.Client == "" {
		c.Listen.Client = d.Listen.Client
	}
	if c.Listen.WebSocketPath == "" {
		c.Listen.WebSocketPath = d.Listen.WebSocketPath
	}
	if c.Listen.TCP == "" {
		c.Listen.TCP = d.Listen.TCP
	}
	if c.Listen.Admin == "" {
		c.Listen.Admin = d.Listen.Admin
	}
	if c.Listen.GRPC == "" {
		c.Listen.GRPC = d.Listen.GRPC
	}
	if c.Listen.DemoService == "" {
		c.Listen.DemoService = d.Listen.DemoService
	}
	if c.Listen.DemoPage == nil {
		c.Listen.DemoPage = d.Listen.DemoPage
	}
	if c.Log.Level == "" {
		c.Log.Level = d.Log.Level
	}
	if c.Log.Format == "" {
		c.Log.Format = d.Log.Format
	}
	if c.Cluster.PresenceTTL <= 0 {
		c.Cluster.PresenceTTL = d.Cluster.PresenceTTL
	}
	if c.Cluster.PresenceFlush <= 0 {
		c.Cluster.PresenceFlush = d.Cluster.PresenceFlush
	}
	if c.Drain.Timeout <= 0 {
		c.Drain.Timeout = d.Drain.Timeout
	}
	if c.Runtime.GCPercent == 0 {
		c.Runtime.GCPercent = d.Runtime.GCPercent
	}
	if c.Broker.URL == "" {
		c.Broker.URL = d.Broker.URL
	}
	if c.Discovery.Kind == "" {
		c.Discovery.Kind = d.Discovery.Kind
	}
}
