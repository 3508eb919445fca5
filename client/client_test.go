package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/heraldgg/herald/client"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

func TestDial(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		cfg := v.config(n, nil)
		cfg.User = "dial-" + v.name
		h := newHooks()
		c := dial(t, cfg, h)
		if c.Session() == "" || c.Node() != n.Node() {
			t.Fatalf("session %q node %q, want a session on %q", c.Session(), c.Node(), n.Node())
		}
		if rtt, err := c.Ping(ctx(t)); err != nil || rtt <= 0 {
			t.Fatalf("ping: %v %v", rtt, err)
		}
		if err := c.Err(); err != nil {
			t.Fatalf("Err of a running client: %v", err)
		}
		select {
		case <-c.Done():
			t.Fatal("Done closed on a running client")
		default:
		}
		none(t, h.disconnects, "disconnect")
	})
}

// TestLocalAddr checks that the client binds the source address it was given,
// for the first connection and for a redial.
func TestLocalAddr(t *testing.T) {
	// Linux routes all of 127/8 to loopback; other systems may not.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	}
	ln.Close()
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		cfg := v.config(n, p)
		cfg.LocalAddr = netip.MustParseAddr("127.0.0.2")
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 10*time.Millisecond
		h := newHooks()
		c := dial(t, cfg, h)
		p.sever()
		recv(t, h.disconnects, "disconnect")
		recv(t, h.reconnects, "reconnect")
		if _, err := c.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
		for i, a := range p.clientAddrs() {
			if ip := a.(*net.TCPAddr).AddrPort().Addr(); ip != cfg.LocalAddr {
				t.Fatalf("connection %d came from %v, want %v", i+1, ip, cfg.LocalAddr)
			}
		}
	})
}

func TestDialFails(t *testing.T) {
	denying := servertest.Start(t, func(c *config.Config) { c.Gateway.Anonymous = "deny" })
	full := servertest.Start(t, func(c *config.Config) { c.Gateway.MaxConnections = 1 })
	dial(t, client.Config{URL: full.TCP}, nil)
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		cfg  client.Config
		code protocol.Code // 0: not a refusal by the server
	}{
		{name: "no URL", cfg: client.Config{}},
		{name: "bad scheme", cfg: client.Config{URL: "http://" + deadAddr}},
		{name: "tcp without port", cfg: client.Config{URL: "tcp://127.0.0.1"}},
		{name: "unknown codec", cfg: client.Config{URL: "tcp://" + deadAddr, Codec: 7}},
		{name: "backoff max below min", cfg: client.Config{URL: "tcp://" + deadAddr, BackoffMin: time.Second, BackoffMax: time.Millisecond}},
		{name: "tcp refused", cfg: client.Config{URL: "tcp://" + deadAddr}},
		{name: "ws refused", cfg: client.Config{URL: "ws://" + deadAddr + "/ws"}},
		{name: "anonymous denied ws", cfg: client.Config{URL: denying.WS, User: "u"}, code: protocol.DisconnectUnauthorized},
		{name: "anonymous denied tcp", cfg: client.Config{URL: denying.TCP, User: "u", Codec: protocol.CodecProto}, code: protocol.DisconnectUnauthorized},
		// Refused before the node knows the codec: in JSON, whatever the client's.
		{name: "node full ws", cfg: client.Config{URL: full.WS, Codec: protocol.CodecProto}, code: protocol.DisconnectTooManyConns},
		{name: "node full tcp", cfg: client.Config{URL: full.TCP, Codec: protocol.CodecProto}, code: protocol.DisconnectTooManyConns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed := make(chan error, 1)
			tc.cfg.OnFail = func(err error) { failed <- err }
			c, err := client.Dial(ctx(t), tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if tc.code != 0 {
				wantCode(t, err, tc.code)
			} else if perr := (*protocol.Error)(nil); errors.As(err, &perr) {
				t.Fatalf("a local failure reported as the server's: %v", err)
			}
			// Dial's failure is its return value; OnFail is for a running client.
			none(t, failed, "OnFail")
		})
	}
}

func TestSubscribePublish(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		sub := dial(t, v.config(n, nil), nil)
		pubCfg := v.config(n, nil)
		pubCfg.User = "pub-" + v.name
		pub := dial(t, pubCfg, nil)

		topic := "chat." + v.name
		in := newInbox()
		s, err := sub.Subscribe(ctx(t), topic, in.handle)
		if err != nil {
			t.Fatal(err)
		}
		if s.Topic != topic || s.Position.Offset != 0 || s.Position.Epoch == "" || s.Recovered {
			t.Fatalf("subscription %+v", s)
		}
		epoch := s.Position.Epoch

		// Publishers alternate, so the subscriber's order is the topic's, not the
		// order of one connection.
		const count = 10
		for i := 1; i <= count; i++ {
			var pos client.Position
			if i%2 == 1 {
				pos = publish(t, n, topic, i)
			} else if pos, err = pub.Publish(ctx(t), topic, payload(i)); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			if pos != (client.Position{Offset: uint64(i), Epoch: epoch}) {
				t.Fatalf("publish %d: position %+v, epoch %s", i, pos, epoch)
			}
		}
		for i := 1; i <= count; i++ {
			m := in.expect(t, topic, uint64(i), epoch)
			if i%2 == 0 && m.User != pubCfg.User {
				t.Errorf("offset %d: user %q, want %q", i, m.User, pubCfg.User)
			}
		}

		// A second subscription to the topic is refused locally, and the first
		// keeps working.
		_, err = sub.Subscribe(ctx(t), topic, in.handle)
		wantCode(t, err, protocol.CodeAlreadySubscribed)

		// After Unsubscribe nothing of topic arrives: a message on another topic,
		// published after, is the next one delivered.
		marker := topic + ".marker"
		ms, err := sub.Subscribe(ctx(t), marker, in.handle)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Unsubscribe(ctx(t), topic); err != nil {
			t.Fatal(err)
		}
		publish(t, n, topic, count+1)
		if _, err := pub.Publish(ctx(t), topic, payload(count+2)); err != nil {
			t.Fatal(err)
		}
		publish(t, n, marker, 1)
		in.expect(t, marker, 1, ms.Position.Epoch)
		wantCode(t, sub.Unsubscribe(ctx(t), topic), protocol.CodeNotSubscribed)

		// Subscribed again, it picks up at the topic's present position.
		s, err = sub.Subscribe(ctx(t), topic, in.handle)
		if err != nil {
			t.Fatal(err)
		}
		if s.Position.Offset != count+2 {
			t.Fatalf("resubscribed at %+v, want offset %d", s.Position, count+2)
		}
		publish(t, n, topic, count+3)
		in.expect(t, topic, count+3, epoch)
	})
}

func TestPublishErrors(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		c := dial(t, v.config(n, nil), nil)
		_, err := c.Publish(ctx(t), "game.score", payload(1))
		wantCode(t, err, protocol.CodePermissionDenied)
		_, err = c.Subscribe(ctx(t), "has space", func(client.Message) {})
		wantCode(t, err, protocol.CodeBadTopic)
		// A refused subscribe leaves nothing behind: the topic can be subscribed
		// once it is valid, and unsubscribing the refused one is "not subscribed".
		wantCode(t, c.Unsubscribe(ctx(t), "has space"), protocol.CodeNotSubscribed)
		if _, err := c.Subscribe(ctx(t), "chat.ok", func(client.Message) {}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx(t), "chat.nil", nil); err == nil {
			t.Fatal("Subscribe with a nil handler succeeded")
		}
	})
}

func TestOnMessage(t *testing.T) {
	eachVariant(t, func(t *testing.T, v variant) {
		// A node per variant: a broadcast reaches every client of the node.
		n := servertest.Start(t, nil)
		h := newHooks()
		cfg := v.config(n, nil)
		cfg.User = "player-" + v.name
		c := dial(t, cfg, h)
		in := newInbox()
		s, err := c.Subscribe(ctx(t), "match.1", in.handle)
		if err != nil {
			t.Fatal(err)
		}

		if st := n.API(t, "/api/broadcast", map[string]any{"data": map[string]int{"n": 1}}, nil); st != 200 {
			t.Fatalf("broadcast: %d", st)
		}
		if st := n.API(t, "/api/push", map[string]any{"user": cfg.User, "data": map[string]int{"n": 2}}, nil); st != 200 {
			t.Fatalf("push to user: %d", st)
		}
		if st := n.API(t, "/api/push", map[string]any{"session": c.Session(), "data": map[string]int{"n": 3}}, nil); st != 200 {
			t.Fatalf("push to session: %d", st)
		}
		// A topic message goes to its subscription, never to OnMessage.
		publish(t, n, "match.1", 1)
		in.expect(t, "match.1", 1, s.Position.Epoch)

		want := []protocol.Kind{protocol.Kind_KIND_BROADCAST, protocol.Kind_KIND_PUSH, protocol.Kind_KIND_PUSH}
		for i, kind := range want {
			m := recv(t, h.messages, kind.Name())
			if m.Kind != kind || m.Topic != "" || string(m.Data) != string(payload(i+1)) {
				t.Fatalf("message %d: want %s with %s, got %+v (data %s)", i+1, kind.Name(), payload(i+1), m, m.Data)
			}
			if i == 2 && m.Session != c.Session() {
				t.Fatalf("push to session: session %q, want %q", m.Session, c.Session())
			}
		}
		none(t, h.messages, "message")
	})
}

func TestRequest(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, tc := range []struct {
		name  string
		route string
		data  []byte
		code  protocol.Code // 0: the reply is data itself
	}{
		{name: "echo", route: "demo.echo", data: payload(1)},
		{name: "echo binary", route: "demo.echo", data: []byte{0, 0xff, 1}},
		{name: "service refusal", route: "demo.join", data: []byte(`[1]`), code: protocol.CodeBadRequest},
		{name: "no route", route: "lobby.join", data: payload(1), code: protocol.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				c := dial(t, v.config(n, nil), nil)
				reply, err := c.Request(ctx(t), tc.route, tc.data, map[string]string{"trace": v.name})
				if tc.code == 0 {
					if err != nil || !bytes.Equal(reply, tc.data) {
						t.Fatalf("reply %q, error %v; want %q", reply, err, tc.data)
					}
					return
				}
				if perr := wantCode(t, err, tc.code); perr.Reason == "" || reply != nil {
					t.Fatalf("reply %q, error %v", reply, perr)
				}
			})
		})
	}
}

func TestMove(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		c := dial(t, v.config(n, nil), nil)
		wantCode(t, c.Move(ctx(t), "world", 1, 2), protocol.CodeNotFound)
		wantCode(t, c.Move(ctx(t), "demo", -5, 2), protocol.CodeBadPosition)
	})
}

// TestMoveEvents checks that enter and the neighbours' position updates reach
// OnEvent on the default node's demo map, which has interest on.
func TestMoveEvents(t *testing.T) {
	n := servertest.Start(t, nil)
	events := func() (client.Config, chan client.Event) {
		ch := make(chan client.Event, 64)
		cfg := variants[0].config(n, nil)
		cfg.OnEvent = func(e client.Event) { ch <- e }
		return cfg, ch
	}
	cfgA, evA := events()
	cfgB, evB := events()
	a, b := dial(t, cfgA, nil), dial(t, cfgB, nil)
	if err := a.Move(ctx(t), "demo", 100, 100); err != nil {
		t.Fatal(err)
	}
	if err := b.Move(ctx(t), "demo", 110, 100); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, evA, "enter of b"); e.Kind != client.EventEnter || e.Entity != b.Session() {
		t.Fatalf("a got %+v", e)
	}
	if e := recv(t, evB, "enter of a"); e.Kind != client.EventEnter || e.Entity != a.Session() {
		t.Fatalf("b got %+v", e)
	}
	if err := a.Move(ctx(t), "demo", 120, 100); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, evB, "a's move"); e.Kind != client.EventMoved || e.Entity != a.Session() || e.X != 120 || e.Map != "demo" {
		t.Fatalf("b got %+v", e)
	}
}

// TestDialInterrupted checks that a Dial whose handshake never completes ends
// with its context or DialTimeout, and leaves nothing running.
func TestDialInterrupted(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, tc := range []struct {
		name        string
		dialTimeout time.Duration
		ctx         func() (context.Context, context.CancelFunc)
		want        error
	}{
		{
			name: "cancelled",
			ctx: func() (context.Context, context.CancelFunc) {
				c, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return c, cancel
			},
			want: context.Canceled,
		},
		{
			name:        "dial timeout",
			dialTimeout: 50 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithCancel(context.Background())
			},
			want: context.DeadlineExceeded,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				p := newProxy(t, hostOf(t, v.url(n)))
				p.hold()
				cfg := v.config(n, p)
				cfg.DialTimeout = tc.dialTimeout
				dctx, cancel := tc.ctx()
				defer cancel()
				done := make(chan error, 1)
				go func() {
					c, err := client.Dial(dctx, cfg)
					if err == nil {
						c.Close()
					}
					done <- err
				}()
				if err := recv(t, done, "Dial to give up"); !errors.Is(err, tc.want) {
					t.Fatalf("Dial: %v, want %v", err, tc.want)
				}
			})
		})
	}
}

// TestCrossCodec checks that what one codec publishes reaches the others
// byte for byte, JSON or not, in one order for all.
func TestCrossCodec(t *testing.T) {
	n := servertest.Start(t, nil)
	const topic = "chat.mixed"
	inboxes := make([]inbox, len(variants))
	clients := make([]*client.Client, len(variants))
	for i, v := range variants {
		clients[i] = dial(t, v.config(n, nil), nil)
		inboxes[i] = newInbox()
		if _, err := clients[i].Subscribe(ctx(t), topic, inboxes[i].handle); err != nil {
			t.Fatal(err)
		}
	}
	var sent [][]byte
	for i, c := range clients {
		for _, data := range [][]byte{payload(i), {0, 1, 0xfe, 0xff, byte(i)}, []byte(`"text ünïcode"`)} {
			if _, err := c.Publish(ctx(t), topic, data); err != nil {
				t.Fatalf("%s publish %q: %v", variants[i].name, data, err)
			}
			sent = append(sent, data)
		}
	}
	for i, in := range inboxes {
		for j, want := range sent {
			m := recv(t, in, fmt.Sprintf("%s message %d", variants[i].name, j+1))
			if m.Offset != uint64(j+1) || !bytes.Equal(m.Data, want) {
				t.Fatalf("%s: message %d is offset %d %q, want %q", variants[i].name, j+1, m.Offset, m.Data, want)
			}
		}
	}
}

// TestRequestGivesUp checks that a call whose answer does not come returns when
// its context ends, or after RequestTimeout without one, and that the connection
// stays usable: the late answer is dropped.
func TestRequestGivesUp(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, tc := range []struct {
		name    string
		timeout time.Duration // Config.RequestTimeout
		ctx     func() (context.Context, context.CancelFunc)
		want    error
	}{
		{
			name:    "cancelled",
			timeout: time.Hour,
			ctx: func() (context.Context, context.CancelFunc) {
				c, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return c, cancel
			},
			want: context.Canceled,
		},
		{
			name:    "deadline",
			timeout: time.Hour,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
		{
			name:    "request timeout",
			timeout: 50 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithCancel(context.Background())
			},
			want: client.ErrTimeout,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachVariant(t, func(t *testing.T, v variant) {
				p := newProxy(t, hostOf(t, v.url(n)))
				cfg := v.config(n, p)
				cfg.RequestTimeout = tc.timeout
				h := newHooks()
				c := dial(t, cfg, h)
				p.holdReplies()

				rctx, cancel := tc.ctx()
				defer cancel()
				done := make(chan error, 1)
				go func() {
					_, err := c.Request(rctx, "lobby.join", payload(1), nil)
					done <- err
				}()
				if err := recv(t, done, "the request to give up"); !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}

				p.release()
				if _, err := c.Ping(ctx(t)); err != nil {
					t.Fatalf("ping after the request gave up: %v", err)
				}
				_, err := c.Request(ctx(t), "lobby.join", payload(2), nil)
				wantCode(t, err, protocol.CodeNotFound)
				none(t, h.disconnects, "disconnect")
			})
		})
	}
}

// TestHeartbeat checks that an idle client keeps its session through many
// heartbeat intervals: its own pings are the traffic the node waits for.
func TestHeartbeat(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Gateway.HeartbeatInterval = 300 * time.Millisecond
		c.Hub.SweepInterval = 20 * time.Millisecond
	})
	eachVariant(t, func(t *testing.T, v variant) {
		h := newHooks()
		c := dial(t, v.config(n, nil), h)
		session := c.Session()
		// Each silent session the node drops is proof that at least 1.5 intervals
		// passed with the node checking; three in a row span over 4.5.
		for range 3 {
			if code := silentSession(t, n); code != protocol.DisconnectHeartbeat {
				t.Fatalf("silent session ended with %d, want %d", code, protocol.DisconnectHeartbeat)
			}
		}
		none(t, h.disconnects, "disconnect of an idle client")
		if c.Session() != session {
			t.Fatalf("session changed from %s to %s", session, c.Session())
		}
		if _, err := c.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHeartbeatTimeout checks that a client that hears nothing from the node for
// 1.5 intervals drops the connection itself and reconnects.
func TestHeartbeatTimeout(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		// Long enough that the client's pings, every interval, reach the node well
		// within its 1.5: only the client may give up here.
		c.Gateway.HeartbeatInterval = 400 * time.Millisecond
		c.Hub.SweepInterval = 20 * time.Millisecond
	})
	eachVariant(t, func(t *testing.T, v variant) {
		p := newProxy(t, hostOf(t, v.url(n)))
		h := newHooks()
		c := dial(t, v.config(n, p), h)
		first := c.Session()
		// The node still hears the client's pings, so only the client can give up.
		p.holdReplies()
		if err := recv(t, h.disconnects, "disconnect"); !errors.Is(err, client.ErrHeartbeatTimeout) || !errors.Is(err, client.ErrDisconnected) {
			t.Fatalf("disconnect: %v", err)
		}
		p.release()
		recv(t, h.reconnects, "reconnect")
		if c.Session() == first {
			t.Fatal("reconnected with the old session id")
		}
		if _, err := c.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestServerSideSubscription checks that topic messages of a subscription a game
// service made for the session (demo.join subscribes it to room.<room>) reach
// OnMessage rather than being dropped for want of a local subscription.
func TestServerSideSubscription(t *testing.T) {
	n := servertest.Start(t, nil)
	h := newHooks()
	c := dial(t, variants[0].config(n, nil), h)
	if _, err := c.Request(ctx(t), "demo.join", []byte(`{"room":"r1"}`), nil); err != nil {
		t.Fatal(err)
	}
	// The server API applies a subscription shortly after answering; publish until
	// one arrives.
	deadline := time.Now().Add(waitFor)
	for {
		n.API(t, "/api/publish", map[string]any{"topic": "room.r1", "data": "hello room"}, nil)
		select {
		case m := <-h.messages:
			if m.Kind != protocol.Kind_KIND_TOPIC || m.Topic != "room.r1" {
				continue // the join announcement, or another kind
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no message of the server-side subscription reached OnMessage")
		}
	}
}

// TestBorrowData: with BorrowData a handler that copies what it keeps sees every
// payload intact, and a request's answer, read by the caller after more frames
// arrived, is a copy of its own.
func TestBorrowData(t *testing.T) {
	n := servertest.Start(t, nil)
	eachVariant(t, func(t *testing.T, v variant) {
		cfg := v.config(n, nil)
		cfg.BorrowData = true
		c := dial(t, cfg, nil)
		topic := "borrow." + v.name
		got := make(chan []byte, 100)
		if _, err := c.Subscribe(ctx(t), topic, func(m client.Message) { got <- bytes.Clone(m.Data) }); err != nil {
			t.Fatal(err)
		}
		const count = 20
		for i := 1; i <= count; i++ {
			publish(t, n, topic, i)
		}
		reply, err := c.Request(ctx(t), "demo.echo", payload(99), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= count; i++ {
			publish(t, n, topic, count+i)
		}
		for i := 1; i <= 2*count; i++ {
			select {
			case d := <-got:
				if !bytes.Equal(d, payload(i)) {
					t.Fatalf("message %d: %q, want %q", i, d, payload(i))
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("message %d did not arrive", i)
			}
		}
		if !bytes.Equal(reply, payload(99)) {
			t.Fatalf("reply %q after later messages, want %q", reply, payload(99))
		}
	})
}
