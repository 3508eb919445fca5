package nats

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by New for a Config that fails Validate.
var ErrInvalidConfig = errors.New("nats: invalid config")

// Config tunes the NATS broker. The zero value means every default.
type Config struct {
	// URL is the NATS server, or several separated by commas:
	// nats://[user:password@]host:port. Default: "nats://127.0.0.1:4222".
	URL string `koanf:"url" yaml:"url"`
	// Stream is the JetStream stream holding every topic's history; every node
	// of a cluster must name the same one. Default: "HERALD".
	Stream string `koanf:"stream" yaml:"stream"`
	// SubjectPrefix starts every subject the broker uses. Default: "herald".
	SubjectPrefix string `koanf:"subject_prefix" yaml:"subject_prefix"`
	// HistorySize is how many recent publications each topic keeps. Default: 300.
	HistorySize int `koanf:"history_size" yaml:"history_size"`
	// HistoryTTL is how long each publication stays in history; a topic whose
	// history has all expired starts a new epoch. Default: 1h.
	HistoryTTL time.Duration `koanf:"history_ttl" yaml:"history_ttl"`
	// Storage is where JetStream keeps history: "file" or "memory". Default: "file".
	Storage string `koanf:"storage" yaml:"storage"`
	// Replicas is how many JetStream servers hold the stream. Default: 1.
	Replicas int `koanf:"replicas" yaml:"replicas"`
	// RequestTimeout bounds each call to NATS when the caller's context allows
	// longer. Default: 5s.
	RequestTimeout time.Duration `koanf:"request_timeout" yaml:"request_timeout"`
	// DialTimeout bounds connecting to a server. Default: 5s.
	DialTimeout time.Duration `koanf:"dial_timeout" yaml:"dial_timeout"`
	// ReconnectWait is the pause between attempts to reconnect to a server
	// (with up to 1s of jitter added). Default: 500ms.
	ReconnectWait time.Duration `koanf:"reconnect_wait" yaml:"reconnect_wait"`
	// PingInterval is how often the connection is checked; two unanswered pings
	// count it dead and start a reconnect. Default: 5s.
	PingInterval time.Duration `koanf:"ping_interval" yaml:"ping_interval"`
	// DeliveryBuffer is how many live publications may wait for the delivery
	// goroutine; past it they are dropped and read back from history.
	// Default: 65536.
	DeliveryBuffer int `koanf:"delivery_buffer" yaml:"delivery_buffer"`
}

// Defaults, applied by WithDefaults.
const (
	DefaultURL            = "nats://127.0.0.1:4222"
	DefaultStream         = "HERALD"
	DefaultSubjectPrefix  = "herald"
	DefaultHistorySize    = 300
	DefaultHistoryTTL     = time.Hour
	DefaultStorage        = "file"
	DefaultReplicas       = 1
	DefaultRequestTimeout = 5 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultReconnectWait  = 500 * time.Millisecond
	DefaultPingInterval   = 5 * time.Second
	DefaultDeliveryBuffer = 65536
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.HistorySize == 0 {
		c.HistorySize = DefaultHistorySize
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = DefaultHistoryTTL
	}
	if c.Storage == "" {
		c.Storage = DefaultStorage
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
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
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.DeliveryBuffer == 0 {
		c.DeliveryBuffer = DefaultDeliveryBuffer
	}
	return c
}

// Validate reports the first invalid field of c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		return fmt.Errorf("nats: stream: %q is not a valid stream name", c.Stream)
	}
	if !validSubjectPrefix(c.SubjectPrefix) {
		return fmt.Errorf("nats: subject_prefix: %q is not a subject of literal tokens", c.SubjectPrefix)
	}
	if c.HistorySize < 1 {
		return fmt.Errorf("nats: history_size: %d must be at least 1", c.HistorySize)
	}
	if c.Storage != "file" && c.Storage != "memory" {
		return fmt.Errorf("nats: storage: %q must be file or memory", c.Storage)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("nats: replicas: %d must be 1 to 5", c.Replicas)
	}
	if c.DeliveryBuffer < 1 {
		return fmt.Errorf("nats: delivery_buffer: %d must be at least 1", c.DeliveryBuffer)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"history_ttl", c.HistoryTTL},
		{"request_timeout", c.RequestTimeout},
		{"dial_timeout", c.DialTimeout},
		{"reconnect_wait", c.ReconnectWait},
		{"ping_interval", c.PingInterval},
	} {
		if d.v < time.Millisecond {
			return fmt.Errorf("nats: %s: %v is below 1ms", d.name, d.v)
		}
	}
	return nil
}

func validSubjectPrefix(p string) bool {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}
