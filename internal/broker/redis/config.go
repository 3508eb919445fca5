package redis

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// ErrInvalidConfig is wrapped by New for a Config that fails Validate.
var ErrInvalidConfig = errors.New("redis: invalid config")

// Config tunes the Redis broker. The zero value means every default.
type Config struct {
	// Address is the Redis server as a URL: redis://[user:password@]host:port/db,
	// rediss:// for TLS. Default: "redis://127.0.0.1:6379/0".
	Address string `koanf:"address" yaml:"address"`
	// Prefix starts every key and channel the broker uses, so several Herald
	// clusters can share one Redis. Default: "herald".
	Prefix string `koanf:"prefix" yaml:"prefix"`
	// HistorySize is how many recent publications each topic keeps. Default: 300.
	HistorySize int `koanf:"history_size" yaml:"history_size"`
	// HistoryTTL is how long a topic's history lives after its last publish;
	// a topic published to again after that starts a new epoch. Redis keeps
	// milliseconds. Default: 1h.
	HistoryTTL time.Duration `koanf:"history_ttl" yaml:"history_ttl"`
	// ProbeInterval is how often the Pub/Sub connection is checked end to end by
	// publishing a ping to this node and waiting for it to come back. Default: 2s.
	ProbeInterval time.Duration `koanf:"probe_interval" yaml:"probe_interval"`
	// ProbeTimeout is how long a ping may take to come back before the Pub/Sub
	// connection is torn down and every subscription is made again. Default: 3s.
	ProbeTimeout time.Duration `koanf:"probe_timeout" yaml:"probe_timeout"`
	// RequestTimeout bounds each call to Redis when the caller's context allows
	// longer. Default: 5s.
	RequestTimeout time.Duration `koanf:"request_timeout" yaml:"request_timeout"`
	// DialTimeout bounds connecting to Redis. Default: 5s.
	DialTimeout time.Duration `koanf:"dial_timeout" yaml:"dial_timeout"`
	// ReconnectWait is the pause before the first attempt to reconnect the
	// Pub/Sub connection; it doubles on each failed attempt up to 5s. Default: 100ms.
	ReconnectWait time.Duration `koanf:"reconnect_wait" yaml:"reconnect_wait"`
}

// Defaults, applied by WithDefaults.
const (
	DefaultAddress        = "redis://127.0.0.1:6379/0"
	DefaultPrefix         = "herald"
	DefaultHistorySize    = 300
	DefaultHistoryTTL     = time.Hour
	DefaultProbeInterval  = 2 * time.Second
	DefaultProbeTimeout   = 3 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultReconnectWait  = 100 * time.Millisecond

	// maxReconnectWait caps the Pub/Sub reconnect backoff.
	maxReconnectWait = 5 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.HistorySize == 0 {
		c.HistorySize = DefaultHistorySize
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = DefaultHistoryTTL
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	return c
}

// Validate reports the first invalid field of c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if _, err := rueidis.ParseURL(c.Address); err != nil {
		return fmt.Errorf("redis: address: %w", err)
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		// Braces would change which part of a key Redis Cluster hashes.
		return fmt.Errorf("redis: prefix: %q must not contain braces", c.Prefix)
	}
	if c.HistorySize < 1 {
		return fmt.Errorf("redis: history_size: %d must be at least 1", c.HistorySize)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"history_ttl", c.HistoryTTL, time.Millisecond},
		{"probe_interval", c.ProbeInterval, time.Millisecond},
		{"probe_timeout", c.ProbeTimeout, time.Millisecond},
		{"request_timeout", c.RequestTimeout, time.Millisecond},
		{"dial_timeout", c.DialTimeout, time.Millisecond},
		{"reconnect_wait", c.ReconnectWait, time.Millisecond},
	} {
		if d.v < d.min {
			return fmt.Errorf("redis: %s: %v is below %v", d.name, d.v, d.min)
		}
	}
	return nil
}
