package etcd

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Config configures a Registry. The zero value means every default.
type Config struct {
	// Endpoints are the etcd client URLs or host:port pairs.
	// Default: ["127.0.0.1:2379"].
	Endpoints []string `koanf:"endpoints"`
	// Prefix is the root of Herald's keys (see package discovery). A
	// trailing "/" is ignored. Default: "/herald".
	Prefix string `koanf:"prefix"`
	// LeaseTTL is how long a registration outlives a process that stopped
	// keeping it alive. etcd counts whole seconds, so it is rounded up, and
	// etcd raises it to its own minimum (1.5 × its election timeout, 2 s
	// with etcd's defaults). Default: 10s.
	LeaseTTL time.Duration `koanf:"lease_ttl"`
	// DialTimeout bounds connecting and authenticating to etcd.
	// Default: 5s.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// RequestTimeout bounds each single request (Get, Grant, Put, Revoke);
	// the watch and keepalive streams are not bounded by it. Close waits at
	// most this long for deregistration. Default: 5s.
	RequestTimeout time.Duration `koanf:"request_timeout"`
}

// Defaults, applied by WithDefaults.
const (
	DefaultEndpoint       = "127.0.0.1:2379"
	DefaultPrefix         = "/herald"
	DefaultLeaseTTL       = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{DefaultEndpoint}
	}
	c.Prefix = strings.TrimRight(c.Prefix, "/")
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// Validate reports the first invalid field of c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	for _, ep := range c.Endpoints {
		if ep == "" {
			return fmt.Errorf("etcd: endpoints: empty endpoint")
		}
	}
	if !strings.HasPrefix(c.Prefix, "/") {
		return fmt.Errorf("etcd: prefix: %q must start with /", c.Prefix)
	}
	if c.LeaseTTL < 0 || c.LeaseTTL > time.Duration(math.MaxInt32)*time.Second {
		return fmt.Errorf("etcd: lease_ttl: %v out of range", c.LeaseTTL)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("etcd: dial_timeout: %v is negative", c.DialTimeout)
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("etcd: request_timeout: %v is negative", c.RequestTimeout)
	}
	return nil
}

// leaseSeconds is LeaseTTL in etcd's unit, rounded up.
func (c Config) leaseSeconds() int64 {
	return int64(math.Ceil(c.LeaseTTL.Seconds()))
}
