package clustertest

import (
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
)

// TestWebSocketHandshakeDeadline connects the players to three nodes with a
// short handshake timeout and expects none to be dropped once connected. It
// found that some are: on a few WebSocket connections (one to three in a
// hundred here) the read deadline nbhttp arms for the HTTP upgrade request
// (engine KeepaliveTime, which internal/transport sets to handshake_timeout)
// is still armed after the upgrade, and handshake_timeout after connecting
// nbio closes the connection as "read timeout": the gateway forgets the
// session and the client reconnects. Clearing the deadline once more 200 ms
// after the upgrade makes it vanish, so it is re-armed just after Herald's
// upgrade cleared it — most likely by nbhttp's AddConnNonTLSNonBlocking,
// which sets it only after registering the connection with its event loop,
// racing the upgrade that loop runs.
//
// In a test process that also starts children (redistest's redis-server) it
// is worse: nbio dups each accepted socket without close-on-exec, so a child
// started in the meantime holds a copy, the client never sees the close, and
// it silently receives nothing until its own heartbeat gives up.
func TestWebSocketHandshakeDeadline(t *testing.T) {
	t.Skip("bug in internal/transport: nbhttp's handshake read deadline survives the upgrade on some WebSocket connections, which the node then drops handshake_timeout after they connect")
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
