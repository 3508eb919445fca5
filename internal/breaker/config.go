package breaker

import (
	"fmt"
	"time"
)

// Config tunes a Breaker. The zero value means every default.
type Config struct {
	// FailureRatio opens the breaker when at least this share of the calls
	// finished within Window failed, once there are MinRequests of them. Between
	// 0 (exclusive) and 1. Default 0.5.
	FailureRatio float64 `koanf:"failure_ratio"`
	// MinRequests is how many calls must have finished within Window before
	// FailureRatio is applied, so that one failure out of two calls does not open
	// the breaker. Default 20.
	MinRequests int `koanf:"min_requests"`
	// ConsecutiveFailures opens the breaker after this many failed calls in a
	// row, however few calls the window holds. Default 5.
	ConsecutiveFailures int `koanf:"consecutive_failures"`
	// Window is how far back a closed breaker counts calls for FailureRatio; it
	// rolls forward in tenths of itself. Default 10s.
	Window time.Duration `koanf:"window"`
	// Cooldown is how long the breaker stays open before letting probes through.
	// Default 5s.
	Cooldown time.Duration `koanf:"cooldown"`
	// Probes is how many calls a half-open breaker lets through at once; that
	// many successes in a row close it. Default 1.
	Probes int `koanf:"probes"`
}

// Defaults, applied by WithDefaults.
const (
	DefaultFailureRatio        = 0.5
	DefaultMinRequests         = 20
	DefaultConsecutiveFailures = 5
	DefaultWindow              = 10 * time.Second
	DefaultCooldown            = 5 * time.Second
	DefaultProbes              = 1
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.FailureRatio == 0 {
		c.FailureRatio = DefaultFailureRatio
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Cooldown == 0 {
		c.Cooldown = DefaultCooldown
	}
	if c.Probes == 0 {
		c.Probes = DefaultProbes
	}
	return c
}

// Validate reports the first invalid field of c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case !(c.FailureRatio > 0 && c.FailureRatio <= 1):
		return fmt.Errorf("breaker: failure_ratio: %v is not in (0, 1]", c.FailureRatio)
	case c.MinRequests < 0:
		return fmt.Errorf("breaker: min_requests: %d is negative", c.MinRequests)
	case c.ConsecutiveFailures < 0:
		return fmt.Errorf("breaker: consecutive_failures: %d is negative", c.ConsecutiveFailures)
	case c.Window < 0:
		return fmt.Errorf("breaker: window: %v is negative", c.Window)
	case c.Cooldown < 0:
		return fmt.Errorf("breaker: cooldown: %v is negative", c.Cooldown)
	case c.Probes < 0 || c.Probes > 1<<16:
		return fmt.Errorf("breaker: probes: %d is not in 1..65536", c.Probes)
	}
	return nil
}
