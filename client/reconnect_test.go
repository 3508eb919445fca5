package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// TestReconnectResumes cuts the network under a subscribed client while messages
// are published, and checks that after reconnecting it gets exactly the missed
// ones, in order, before live ones, and that a call made while it was down waits
// for the new connection.
func TestReconnectResumes(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 10*time.Millisecond
		// The redial waits at the proxy while the test publishes; it must not
		// time out and come again, which the connection count below would see.
		cfg.DialTimeout = waitFor
		h := newHooks()
		c := dial(t, cfg, h)
		first := c.Session()

		topic := "room." + v.name
		in := newInbox()
		s, err := c.Subscribe(ctx(t), topic, in.handle)
		if err != nil {
			t.Fatal(err)
		}
		epoch := s.Position.Epoch
		for i := 1; i <= 3; i++ {
			publish(t, n, topic, i)
			in.expect(t, topic, uint64(i), epoch)
		}

		// Held, the redial gets as far as the proxy and waits there, so everything
		// published now is certainly missed by the client.
		p.hold()
		p.sever()
		if err := recv(t, h.disconnects, "disconnect"); !errors.Is(err, client.ErrDisconnected) {
			t.Fatalf("disconnect: %v", err)
		}
		for i := 4; i <= 8; i++ {
			publish(t, n, topic, i)
		}
		waiting := make(chan error, 1)
		var waited client.Position
		go func() {
			var err error
			waited, err = c.Publish(context.Background(), "chat."+v.name, payload(1))
			waiting <- err
		}()
		p.release()

		recv(t, h.reconnects, "reconnect")
		if c.Session() == first {
			t.Fatal("reconnected with the old session id")
		}
		for i := 9; i <= 10; i++ {
			publish(t, n, topic, i)
		}
		for i := 4; i <= 10; i++ {
			in.expect(t, topic, uint64(i), epoch)
		}
		if err := recv(t, waiting, "the publish made while disconnected"); err != nil || waited.Offset != 1 {
			t.Fatalf("publish made while disconnected: %+v %v", waited, err)
		}
		none(t, in, "message after the last one published")
		none(t, h.disconnects, "second disconnect")
		none(t, h.fails, "failure")
		if got := p.connections(); got != 2 {
			t.Fatalf("proxy saw %d connections, want 2", got)
		}
	})
}

// TestReconnectDropsInFlight checks that a call in flight when its connection
// drops fails with ErrDisconnected instead of waiting out its timeout, and that
// the client then carries on on a new connection.
func TestReconnectDropsInFlight(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 10*time.Millisecond
		cfg.RequestTimeout = time.Hour
		h := newHooks()
		c := dial(t, cfg, h)

		p.holdReplies()
		done := make(chan error, 1)
		go func() {
			_, err := c.Request(context.Background(), "lobby.join", payload(1), nil)
			done <- err
		}()
		// The request may be sent before the cut or wait for the new connection;
		// either way it must end without the hour-long timeout.
		p.sever()
		recv(t, h.disconnects, "disconnect")
		p.release()
		err := recv(t, done, "the request to end")
		var perr *protocol.Error
		if !errors.Is(err, client.ErrDisconnected) && !(errors.As(err, &perr) && perr.Code == protocol.CodeNotFound) {
			t.Fatalf("request across the drop: %v", err)
		}
		recv(t, h.reconnects, "reconnect")
		if _, err := c.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGiveUp checks that a client that cannot reconnect stops, says why once,
// and refuses calls from then on.
func TestGiveUp(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, tc := range []struct {
		name       string
		maxRetries int
		cut        func(*proxy)
	}{
		// The proxy refuses new connections: every redial fails at once.
		{name: "retries exhausted", maxRetries: 3, cut: (*proxy).refuse},
		// The node would take the client back, but reconnecting is off.
		{name: "reconnect off", maxRetries: -1, cut: (*proxy).sever},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				p := newProxy(t, hostOf(t, v.url(n)))
				cfg := v.config(n, p)
				cfg.MaxRetries = tc.maxRetries
				cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
				h := newHooks()
				c := dial(t, cfg, h)
				if _, err := c.Subscribe(ctx(t), "room.1", func(client.Message) {}); err != nil {
					t.Fatal(err)
				}

				tc.cut(p)
				if err := recv(t, h.disconnects, "disconnect"); !errors.Is(err, client.ErrDisconnected) {
					t.Fatalf("disconnect: %v", err)
				}
				err := recv(t, h.fails, "OnFail")
				if !errors.Is(err, client.ErrGaveUp) {
					t.Fatalf("OnFail: %v", err)
				}
				closed(t, c.Done(), "Done")
				if !errors.Is(c.Err(), client.ErrGaveUp) {
					t.Fatalf("Err: %v", c.Err())
				}
				if _, err := c.Publish(ctx(t), "chat.x", payload(1)); !errors.Is(err, client.ErrGaveUp) {
					t.Fatalf("publish after giving up: %v", err)
				}
				if _, err := c.Subscribe(ctx(t), "room.2", func(client.Message) {}); !errors.Is(err, client.ErrGaveUp) {
					t.Fatalf("subscribe after giving up: %v", err)
				}
				if got := p.connections(); got != 1 {
					t.Fatalf("proxy saw %d connections, want 1", got)
				}
				none(t, h.reconnects, "reconnect")
				none(t, h.disconnects, "second disconnect")
				none(t, h.fails, "second OnFail")
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if !errors.Is(c.Err(), client.ErrGaveUp) {
					t.Fatalf("Close replaced Err %v", c.Err())
				}
			})
		})
	}
}

// TestKick checks that a kick, a terminal disconnect, ends the client without a
// redial.
func TestKick(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.User = "cheater-" + v.name
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
		h := newHooks()
		c := dial(t, cfg, h)

		if st := n.API(t, "/api/kick", map[string]any{"user": cfg.User, "reason": "speed hack"}, nil); st != 200 {
			t.Fatalf("kick: %d", st)
		}
		err := recv(t, h.disconnects, "disconnect")
		if !errors.Is(err, client.ErrDisconnected) {
			t.Fatalf("disconnect: %v", err)
		}
		wantCode(t, err, protocol.DisconnectKicked)
		wantCode(t, recv(t, h.fails, "OnFail"), protocol.DisconnectKicked)
		closed(t, c.Done(), "Done")
		wantCode(t, c.Err(), protocol.DisconnectKicked)
		if errors.Is(c.Err(), client.ErrGaveUp) {
			t.Fatalf("a kick reported as giving up: %v", c.Err())
		}
		if got := p.connections(); got != 1 {
			t.Fatalf("proxy saw %d connections, want 1: the client redialled after a kick", got)
		}
		none(t, h.reconnects, "reconnect")
	})
}

// TestSince checks subscriptions that start from a stored position: replayed
// when the node still has the history, reported lost when it does not.
func TestSince(t *testing.T) {
	const history = 3
	n := servertest.Start(t, func(c *config.Config) { c.Broker.Memory.HistorySize = history })
	for _, tc := range []struct {
		name      string
		since     func(epoch string) client.Position
		recovered bool
	}{
		{name: "within history", since: func(e string) client.Position { return client.Position{Offset: 4, Epoch: e} }, recovered: true},
		{name: "at the end", since: func(e string) client.Position { return client.Position{Offset: 6, Epoch: e} }, recovered: true},
		{name: "history gone", since: func(e string) client.Position { return client.Position{Offset: 1, Epoch: e} }},
		{name: "other epoch", since: func(string) client.Position { return client.Position{Offset: 5, Epoch: "stale"} }},
		{name: "beyond the end", since: func(e string) client.Position { return client.Position{Offset: 9, Epoch: e} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				topic := fmt.Sprintf("hist.%s.%s", v.name, strings.ReplaceAll(tc.name, " ", "-"))
				var pos client.Position
				for i := 1; i <= 6; i++ {
					pos = publish(t, n, topic, i)
				}
				c := dial(t, v.config(n, nil), nil)
				since := tc.since(pos.Epoch)
				gaps := make(chan [2]client.Position, 10)
				in := newInbox()
				s, err := c.Subscribe(ctx(t), topic, in.handle, client.Since(since),
					client.OnUnrecovered(func(since, now client.Position) { gaps <- [2]client.Position{since, now} }))
				if err != nil {
					t.Fatal(err)
				}
				if s.Recovered != tc.recovered || s.Position != pos {
					t.Fatalf("subscription %+v, want recovered %v at %+v", s, tc.recovered, pos)
				}
				if tc.recovered {
					for i := since.Offset + 1; i <= pos.Offset; i++ {
						in.expect(t, topic, i, pos.Epoch)
					}
					none(t, gaps, "OnUnrecovered")
				} else if g := recv(t, gaps, "OnUnrecovered"); g != [2]client.Position{since, pos} {
					t.Fatalf("OnUnrecovered(%+v, %+v), want (%+v, %+v)", g[0], g[1], since, pos)
				}
				publish(t, n, topic, 7)
				in.expect(t, topic, 7, pos.Epoch)
			})
		})
	}
}

// TestClose checks that Close ends the client at once in every state, that
// calls fail with ErrClosed after it, and that it is not reported as a failure.
// The leak check in TestMain shows that no goroutine of a closed client remains.
func TestClose(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, tc := range []struct {
		name string
		// before brings the client into the state Close is tested in.
		before func(t *testing.T, c *client.Client, p *proxy, h *hooks)
	}{
		{name: "idle"},
		{name: "call in flight", before: func(t *testing.T, c *client.Client, p *proxy, h *hooks) {
			p.holdReplies()
		}},
		{name: "redial held", before: func(t *testing.T, c *client.Client, p *proxy, h *hooks) {
			p.hold()
			p.sever()
			recv(t, h.disconnects, "disconnect")
		}},
		{name: "backing off", before: func(t *testing.T, c *client.Client, p *proxy, h *hooks) {
			p.refuse()
			recv(t, h.disconnects, "disconnect")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				p := newProxy(t, hostOf(t, v.url(n)))
				cfg := v.config(n, p)
				cfg.RequestTimeout = time.Hour
				if tc.name == "backing off" {
					// Redials fail at once; the wait before the next is what Close
					// has to cut short.
					cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour
					cfg.MaxRetries = 1000
				} else {
					cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
				}
				h := newHooks()
				c := dial(t, cfg, h)
				handled := make(chan struct{}, 10)
				if _, err := c.Subscribe(ctx(t), "room.1", func(client.Message) { handled <- struct{}{} }); err != nil {
					t.Fatal(err)
				}
				if tc.before != nil {
					tc.before(t, c, p, h)
				}
				inFlight := make(chan error, 1)
				go func() {
					_, err := c.Request(context.Background(), "lobby.join", nil, nil)
					inFlight <- err
				}()

				closeDone := make(chan error, 1)
				go func() { closeDone <- c.Close() }()
				if err := recv(t, closeDone, "Close"); err != nil {
					t.Fatal(err)
				}
				closed(t, c.Done(), "Done")
				if !errors.Is(c.Err(), client.ErrClosed) {
					t.Fatalf("Err after Close: %v", c.Err())
				}
				// Answered before Close or cut by it: either way it ended.
				if err := recv(t, inFlight, "the call in flight"); err != nil && !errors.Is(err, client.ErrClosed) {
					if perr := (*protocol.Error)(nil); !errors.As(err, &perr) {
						t.Fatalf("call in flight across Close: %v", err)
					}
				}
				if _, err := c.Publish(ctx(t), "chat.x", payload(1)); !errors.Is(err, client.ErrClosed) {
					t.Fatalf("publish after Close: %v", err)
				}
				if _, err := c.Ping(ctx(t)); !errors.Is(err, client.ErrClosed) {
					t.Fatalf("ping after Close: %v", err)
				}
				if err := c.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				none(t, h.fails, "OnFail after Close")
				none(t, h.reconnects, "reconnect after Close")
				if tc.before == nil {
					none(t, h.disconnects, "OnDisconnect for Close")
				}
			})
		})
	}
}

// TestReconnectDuringResubscribe cuts the connection a second time while the
// client waits for the answer to its resubscription, and checks that the
// subscription survives to the connection after.
func TestReconnectDuringResubscribe(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 10*time.Millisecond
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

		// The next link forwards the upgrade and connect, and swallows the sub.
		handshake := 1
		if !v.tcp {
			handshake = 2
		}
		p.stallAfter(handshake)
		p.sever()
		recv(t, h.disconnects, "first disconnect")
		recv(t, p.stalled, "the resubscription")
		p.stallAfter(0)
		publish(t, n, topic, 2)
		p.sever()
		recv(t, h.disconnects, "second disconnect")
		recv(t, h.reconnects, "reconnect")
		publish(t, n, topic, 3)
		in.expect(t, topic, 2, s.Position.Epoch)
		in.expect(t, topic, 3, s.Position.Epoch)
		none(t, h.reconnects, "second reconnect")
	})
}

// TestChurnAcrossReconnects subscribes and unsubscribes many topics at once
// while the connection is cut again as soon as it is back, then checks that the
// node delivers exactly the topics the client ended up subscribed to.
func TestChurnAcrossReconnects(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Gateway.MessageRate, c.Gateway.MessageBurst = 1e6, 1e6
	})
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
		cfg.MaxRetries = 1000
		h := newHooks()
		c := dial(t, cfg, h)

		const topics = 20
		got := make(chan string, 1000)
		handler := func(m client.Message) { got <- m.Topic }
		stop := make(chan struct{})
		errs := make(chan error, topics)
		cctx := ctx(t)
		for i := range topics {
			topic := fmt.Sprintf("churn.%s.%d", v.name, i)
			go func() {
				// Toggle until told to stop, then make sure of being subscribed.
				// A drop may fail a call; nothing else may.
				subscribed := false
				for {
					select {
					case <-stop:
						if subscribed {
							errs <- nil
							return
						}
					default:
					}
					var err error
					if subscribed {
						err = c.Unsubscribe(cctx, topic)
					} else {
						_, err = c.Subscribe(cctx, topic, handler)
					}
					switch {
					case err == nil:
						subscribed = !subscribed
					case !errors.Is(err, client.ErrDisconnected):
						errs <- fmt.Errorf("%s (subscribed %v): %w", topic, subscribed, err)
						return
					}
				}
			}()
		}
		for range 20 {
			p.sever()
			recv(t, h.reconnects, "reconnect")
		}
		close(stop)
		for range topics {
			if err := recv(t, errs, "the churn to settle"); err != nil {
				t.Fatal(err)
			}
		}
		// The node delivers what it holds subscriptions for: every topic, once.
		want := make(map[string]bool)
		for i := range topics {
			topic := fmt.Sprintf("churn.%s.%d", v.name, i)
			publish(t, n, topic, 1)
			want[topic] = true
		}
		for range topics {
			topic := recv(t, got, "a message")
			if !want[topic] {
				t.Fatalf("unexpected or repeated message on %s", topic)
			}
			delete(want, topic)
		}
	})
}
