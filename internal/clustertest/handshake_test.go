package clustertest

import (
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
)

// TestWebSocketHandshakeDeadline connects the players to three nodes with a
// short handshake timeout and expects none to be dropped once connected. nbhttp
// arms its HTTP read deadline from its accept goroutine after handing the
// connection to an event loop, which may already have upgraded it; that deadline
// then cut one to three WebSocket connections in a hundred, handshake_timeout
// after they connected. The transport now times handshakes itself and leaves
// nbhttp's deadline unarmed.
func TestWebSocketHandshakeDeadline(t *testing.T) {
	const timeout = time.Second
	nodes := startNodes(t, "memory", func(c *config.Config) { c.Transport.HandshakeTimeout = timeout })
	start := time.Now()
	ps := dialPlayers(t, nodes, start)
	// Every stale deadline has fired by then; this waits for something that
	// must not happen, so only time can tell.
	time.Sleep(time.Until(start.Add(3 * timeout)))
	for _, p := range ps {
		p.mu.Lock()
		for _, d := range p.drops {
			t.Errorf("player %d (%s) dropped: %s", p.id, p.c.Node(), d)
		}
		p.mu.Unlock()
	}
}
