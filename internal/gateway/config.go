package gateway

import (
	"fmt"
	"time"
)

// Config is the client-facing policy.
type Config struct {
	// HeartbeatInterval is how often clients should ping; a connection silent for
	// 1.5 × this is closed. Default 30s.
	HeartbeatInterval time.Duration `koanf:"heartbeat_interval"`
	// ConnectTimeout is how long a new connection has to send connect. Default 5s.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// Anonymous says whether a client may connect with just a user id in the connect
	// frame: "allow" (default) or "deny".
	Anonymous string `koanf:"anonymous"`
	// ClientPublish lists the topic patterns clients may publish to ("chat.*" matches
	// every topic under "chat."). Default ["chat.*"]. Set to ["none"] to forbid all.
	ClientPublish []string `koanf:"client_publish"`
	// MaxTopicLength is the longest topic name accepted, in bytes. Default 256.
	MaxTopicLength int `koanf:"max_topic_length"`
	// MaxConnections caps the connections of this node. Default 1000000.
	MaxConnections int `koanf:"max_connections"`
	// MaxConnectionsPerIP caps the connections from one client address. Default 1000000
	// (load generators and NAT gateways share addresses; lower it for public nodes).
	MaxConnectionsPerIP int `koanf:"max_connections_per_ip"`
	// MessageRate is the sustained frames per second one client may send. Default 100.
	MessageRate float64 `koanf:"message_rate"`
	// MessageBurst is how many frames a client may send at once above the rate. Default 200.
	MessageBurst int `koanf:"message_burst"`
	// RequestTimeout bounds broker calls made for one client request. Default 5s.
	// (A req to a game service is bounded by its route's timeout instead.)
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// MaxRequests caps the reqs one connection may have waiting for game
	// services; past it a req is answered "limit exceeded" at once. Default 64.
	MaxRequests int `koanf:"max_requests"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 30 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.Anonymous == "" {
		c.Anonymous = "allow"
	}
	if c.ClientPublish == nil {
		c.ClientPublish = []string{"chat.*"}
	}
	if c.MaxTopicLength <= 0 {
		c.MaxTopicLength = 256
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 1_000_000
	}
	if c.MaxConnectionsPerIP <= 0 {
		c.MaxConnectionsPerIP = 1_000_000
	}
	if c.MessageRate <= 0 {
		c.MessageRate = 100
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = 200
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = 64
	}
	return c
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.Anonymous != "allow" && c.Anonymous != "deny" {
		return fmt.Errorf("anonymous: %q is neither \"allow\" nor \"deny\"", c.Anonymous)
	}
	return nil
}

// HeartbeatTimeout is how long a connection may stay silent.
func (c Config) HeartbeatTimeout() time.Duration { return c.HeartbeatInterval * 3 / 2 }
