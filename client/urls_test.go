package client_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/broker/redis/redistest"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// TestURLsRotate runs three nodes on one Redis, each behind a proxy, and a
// client that knows all three. When its node's link drops, the redial goes to
// the next address; a dead address is passed over and the list wraps around.
// The nodes share offsets, so the subscription resumes on each new node with
// nothing missed and no OnUnrecovered.
func TestURLsRotate(t *testing.T) {
	url := redistest.Start(t).URL()
	var nodes [3]*servertest.Node
	for i := range nodes {
		nodes[i] = servertest.Start(t, func(c *config.Config) { c.Broker.URL = url })
	}
	eachVariant(t, func(t *testing.T, v variant) {
		var px [3]*proxy
		for i, n := range nodes {
			px[i] = newProxy(t, hostOf(t, v.url(n)))
		}
		cfg := v.config(nodes[0], px[0])
		cfg.URLs = []string{px[1].via(v.url(nodes[1])), px[2].via(v.url(nodes[2]))}
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
		h := newHooks()
		c := dial(t, cfg, h)

		topic := "room." + v.name
		gaps := make(chan client.Position, 10)
		in := newInbox()
		if _, err := c.Subscribe(ctx(t), topic, in.handle,
			client.OnUnrecovered(func(since, _ client.Position) { gaps <- since })); err != nil {
			t.Fatal(err)
		}
		pos := publish(t, nodes[0], topic, 1)
		in.expect(t, topic, 1, pos.Epoch)

		step := func(want int, offset int) {
			t.Helper()
			recv(t, h.disconnects, "disconnect")
			recv(t, h.reconnects, "reconnect")
			if c.Node() != nodes[want].Node() {
				t.Fatalf("on node %q, want %q", c.Node(), nodes[want].Node())
			}
			// Published on the node the client left: the new node replays it.
			publish(t, nodes[0], topic, offset)
			in.expect(t, topic, uint64(offset), pos.Epoch)
		}

		// The link drops (not a drain): the first redial goes to the next node.
		px[0].sever()
		step(1, 2)
		// Both other addresses dead: the third refuses, then the list wraps
		// around to the first, whose proxy forwards again.
		px[1].refuse()
		px[2].refuse()
		step(0, 3)
		if a, b := px[0].connections(), px[1].connections(); a != 2 || b != 1 {
			t.Fatalf("connections through the proxies: first %d, second %d; want 2, 1", a, b)
		}
		none(t, gaps, "OnUnrecovered")
		none(t, h.fails, "failure")
	})
}

// TestURLsDial checks that Dial passes over an address that does not answer,
// and stops at a refusal that every node of the cluster would repeat.
func TestURLsDial(t *testing.T) {
	open := servertest.Start(t, nil)
	closedNode := servertest.Start(t, func(c *config.Config) { c.Gateway.Anonymous = "deny" })
	eachVariant(t, func(t *testing.T, v variant) {
		dead := newProxy(t, hostOf(t, v.url(open)))
		dead.refuse()
		live := newProxy(t, hostOf(t, v.url(open)))

		cfg := v.config(open, dead)
		cfg.URLs = []string{live.via(v.url(open))}
		c := dial(t, cfg, nil)
		if c.Node() != open.Node() || live.connections() != 1 {
			t.Fatalf("on node %q after %d connections to the live address", c.Node(), live.connections())
		}

		// Every address dead: the error names each.
		cfg.URLs = []string{dead.via(v.url(open))}
		_, err := client.Dial(ctx(t), cfg)
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
			t.Fatalf("Dial with two dead addresses: %v", err)
		}

		deny := newProxy(t, hostOf(t, v.url(closedNode)))
		cfg = v.config(closedNode, deny)
		cfg.URLs = []string{live.via(v.url(open))}
		_, err = client.Dial(ctx(t), cfg)
		wantCode(t, err, protocol.DisconnectUnauthorized)
		if got := live.connections(); got != 1 {
			t.Fatalf("after a terminal refusal the next address was dialled (%d connections)", got)
		}
	})
}

// TestResubscribeRetried reconnects a client while its node's Redis is frozen:
// the node cannot read the topic's history and refuses the resubscription as
// unavailable. The client keeps the subscription and asks again; once Redis
// resumes, the subscription carries on with nothing missed.
func TestResubscribeRetried(t *testing.T) {
	for _, v := range []variant{variants[0], variants[3]} {
		t.Run(v.name, func(t *testing.T) {
			srv := redistest.Start(t)
			n := servertest.Start(t, func(c *config.Config) {
				c.Broker.URL = srv.URL()
				c.Broker.Redis.RequestTimeout = 200 * time.Millisecond
			})
			p := newProxy(t, hostOf(t, v.url(n)))
			cfg := v.config(n, p)
			cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 20*time.Millisecond
			var log logBuffer
			cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
			h := newHooks()
			c := dial(t, cfg, h)

			topic := "room." + v.name
			refused := make(chan error, 10)
			gaps := make(chan client.Position, 10)
			in := newInbox()
			if _, err := c.Subscribe(ctx(t), topic, in.handle,
				client.OnError(func(err error) { refused <- err }),
				client.OnUnrecovered(func(since, _ client.Position) { gaps <- since })); err != nil {
				t.Fatal(err)
			}
			pos := publish(t, n, topic, 1)
			in.expect(t, topic, 1, pos.Epoch)

			srv.Stop()
			p.sever()
			recv(t, h.disconnects, "disconnect")
			// The first answer to the resubscription is the refusal.
			recv(t, h.reconnects, "reconnect")
			srv.Cont()
			publish(t, n, topic, 2)
			in.expect(t, topic, 2, pos.Epoch)
			if !strings.Contains(log.String(), "asking again") {
				t.Fatalf("the resubscription was not refused while Redis was frozen; log:\n%s", log.String())
			}
			none(t, refused, "OnError")
			none(t, gaps, "OnUnrecovered")
		})
	}
}

// logBuffer collects a client's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
