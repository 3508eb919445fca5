package client_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// TestDrain checks that a draining node's disconnect lets the client reconnect,
// here to another node (the proxy stands in for a load balancer), where the old
// topic position means nothing.
func TestDrain(t *testing.T) {
	eachVariant(t, func(t *testing.T, v variant) {
		a := servertest.Start(t, nil)
		b := servertest.Start(t, nil)
		p := newProxy(t, hostOf(t, v.url(a)))
		cfg := v.config(a, p)
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 10*time.Millisecond
		h := newHooks()
		c := dial(t, cfg, h)
		if c.Node() != a.Node() {
			t.Fatalf("node %q, want %q", c.Node(), a.Node())
		}

		type gap struct{ since, now client.Position }
		gaps := make(chan gap, 10)
		in := newInbox()
		s, err := c.Subscribe(ctx(t), "room.1", in.handle,
			client.OnUnrecovered(func(since, now client.Position) { gaps <- gap{since, now} }))
		if err != nil {
			t.Fatal(err)
		}
		publish(t, a, "room.1", 1)
		in.expect(t, "room.1", 1, s.Position.Epoch)

		p.retarget(hostOf(t, v.url(b)))
		if err := a.Shutdown(ctx(t)); err != nil {
			t.Fatal(err)
		}
		err = recv(t, h.disconnects, "disconnect")
		if perr := wantCode(t, err, protocol.DisconnectShutdown); !perr.Code.Reconnect() {
			t.Fatalf("shutdown code %d does not allow reconnecting", perr.Code)
		}
		recv(t, h.reconnects, "reconnect")
		if c.Node() != b.Node() {
			t.Fatalf("reconnected to %q, want %q", c.Node(), b.Node())
		}
		g := recv(t, gaps, "OnUnrecovered")
		if g.since != (client.Position{Offset: 1, Epoch: s.Position.Epoch}) || g.now.Offset != 0 || g.now.Epoch == s.Position.Epoch {
			t.Fatalf("OnUnrecovered(%+v, %+v)", g.since, g.now)
		}
		pos := publish(t, b, "room.1", 1)
		in.expect(t, "room.1", 1, pos.Epoch)
		none(t, h.fails, "failure")
	})
}

// TestRedialRefused moves a client from a draining node to one that refuses it:
// a terminal refusal ends the client at once, a passing one (the node is full)
// is a failed redial like any other.
func TestRedialRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy func(*config.Config)
		code   protocol.Code
		dials  int // connections the proxy sees: the first, then the redials
	}{
		{
			name:   "unauthorized",
			policy: func(c *config.Config) { c.Gateway.Anonymous = "deny" },
			code:   protocol.DisconnectUnauthorized,
			dials:  2,
		},
		{
			name:   "node full",
			policy: func(c *config.Config) { c.Gateway.MaxConnections = 1 },
			code:   protocol.DisconnectTooManyConns,
			dials:  1 + 2, // MaxRetries
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				a := servertest.Start(t, nil)
				b := servertest.Start(t, tc.policy)
				if tc.code == protocol.DisconnectTooManyConns {
					// Someone else holds the node's only connection.
					dial(t, v.config(b, nil), nil)
				}
				p := newProxy(t, hostOf(t, v.url(a)))
				cfg := v.config(a, p)
				cfg.User = "player"
				cfg.MaxRetries = 2
				cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
				h := newHooks()
				c := dial(t, cfg, h)

				p.retarget(hostOf(t, v.url(b)))
				if err := a.Shutdown(ctx(t)); err != nil {
					t.Fatal(err)
				}
				wantCode(t, recv(t, h.disconnects, "disconnect"), protocol.DisconnectShutdown)
				err := recv(t, h.fails, "OnFail")
				wantCode(t, err, tc.code)
				if gaveUp := errors.Is(err, client.ErrGaveUp); gaveUp != tc.code.Reconnect() {
					t.Fatalf("OnFail(%v): gave up %v, want %v", err, gaveUp, tc.code.Reconnect())
				}
				closed(t, c.Done(), "Done")
				if got := p.connections(); got != tc.dials {
					t.Fatalf("proxy saw %d connections, want %d", got, tc.dials)
				}
				none(t, h.reconnects, "reconnect")
			})
		})
	}
}

// TestResubscribeRefused checks that a subscription the new node refuses is
// reported to its OnError and dropped, while the others carry on.
func TestResubscribeRefused(t *testing.T) {
	eachVariant(t, func(t *testing.T, v variant) {
		a := servertest.Start(t, nil)
		b := servertest.Start(t, func(c *config.Config) { c.Gateway.MaxTopicLength = 10 })
		p := newProxy(t, hostOf(t, v.url(a)))
		cfg := v.config(a, p)
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
		h := newHooks()
		c := dial(t, cfg, h)

		long, short := "room.with-a-long-name", "room.1"
		refused := make(chan error, 10)
		in := newInbox()
		if _, err := c.Subscribe(ctx(t), long, in.handle, client.OnError(func(err error) { refused <- err })); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx(t), short, in.handle, client.OnError(func(err error) { refused <- err })); err != nil {
			t.Fatal(err)
		}

		p.retarget(hostOf(t, v.url(b)))
		if err := a.Shutdown(ctx(t)); err != nil {
			t.Fatal(err)
		}
		recv(t, h.disconnects, "disconnect")
		wantCode(t, recv(t, refused, "OnError"), protocol.CodeBadTopic)
		recv(t, h.reconnects, "reconnect")
		none(t, refused, "second OnError")

		pos := publish(t, b, short, 1)
		in.expect(t, short, 1, pos.Epoch)
		// The refused subscription is gone from the client too: subscribing anew
		// asks the node, which refuses it again, rather than "already subscribed".
		_, err := c.Subscribe(ctx(t), long, in.handle)
		wantCode(t, err, protocol.CodeBadTopic)
		wantCode(t, c.Unsubscribe(ctx(t), long), protocol.CodeNotSubscribed)
	})
}

// TestFrameTooLarge checks that a frame over MaxFrameSize ends the client: a
// reconnect would replay the same topic message and drop again, for ever.
func TestFrameTooLarge(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.MaxFrameSize = 1024
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
		h := newHooks()
		c := dial(t, cfg, h)
		topic := "room." + v.name
		in := newInbox()
		s, err := c.Subscribe(ctx(t), topic, in.handle)
		if err != nil {
			t.Fatal(err)
		}
		publish(t, n, topic, 1)
		in.expect(t, topic, 1, s.Position.Epoch)

		big := json.RawMessage(`"` + strings.Repeat("x", 4<<10) + `"`)
		if st := n.API(t, "/api/publish", map[string]any{"topic": topic, "data": big}, nil); st != 200 {
			t.Fatalf("publish: %d", st)
		}
		if err := recv(t, h.disconnects, "disconnect"); !errors.Is(err, protocol.ErrFrameTooLarge) {
			t.Fatalf("disconnect: %v", err)
		}
		if err := recv(t, h.fails, "OnFail"); !errors.Is(err, protocol.ErrFrameTooLarge) {
			t.Fatalf("OnFail: %v", err)
		}
		closed(t, c.Done(), "Done")
		if !errors.Is(c.Err(), protocol.ErrFrameTooLarge) {
			t.Fatalf("Err: %v", c.Err())
		}
		if got := p.connections(); got != 1 {
			t.Fatalf("proxy saw %d connections, want 1", got)
		}
		none(t, in, "message")
	})
}
