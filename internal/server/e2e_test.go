package server_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// payload returns application data valid in both codecs (JSON is a valid byte
// payload too).
func payload(i int) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

func sameJSON(a, b []byte) bool {
	return bytes.Equal(bytes.Join(bytes.Fields(a), nil), bytes.Join(bytes.Fields(b), nil))
}

func TestConnectSubPubEveryTransportAndCodec(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, hello := connect(t, n, v, "alice-"+v.name)
			if hello.Session == "" || hello.Node != n.Node() || hello.HeartbeatMs != 30000 || hello.User != "alice-"+v.name {
				t.Fatalf("connected = %v", hello)
			}
			if pong := r.call(&protocol.Envelope{Op: protocol.Op_OP_PING}); pong.Op != protocol.Op_OP_PONG {
				t.Fatalf("ping: %v", pong)
			}
			topic := "chat." + v.name
			ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: topic})
			if ack.Op != protocol.Op_OP_SUBSCRIBED || ack.Topic != topic || ack.Epoch == "" || ack.Offset != 0 {
				t.Fatalf("sub: %v", ack)
			}
			for i := 1; i <= 3; i++ {
				id := r.send(&protocol.Envelope{Op: protocol.Op_OP_PUB, Topic: topic, Data: payload(i)})
				// The acknowledgement and the message itself may arrive in either order.
				var gotAck, gotMsg bool
				for !gotAck || !gotMsg {
					env := r.next()
					switch {
					case env.Op == protocol.Op_OP_PUBLISHED && env.Id == id:
						if env.Offset != uint64(i) || env.Epoch != ack.Epoch {
							t.Fatalf("published: %v", env)
						}
						gotAck = true
					case env.Op == protocol.Op_OP_MSG:
						if env.Topic != topic || env.Offset != uint64(i) || env.Epoch != ack.Epoch ||
							env.Kind != protocol.Kind_KIND_TOPIC || !sameJSON(env.Data, payload(i)) {
							t.Fatalf("msg: %v", env)
						}
						if env.User != "alice-"+v.name {
							t.Errorf("msg user = %q", env.User)
						}
						gotMsg = true
					default:
						t.Fatalf("unexpected %v", env)
					}
				}
			}
			if un := r.call(&protocol.Envelope{Op: protocol.Op_OP_UNSUB, Topic: topic}); un.Op != protocol.Op_OP_UNSUBSCRIBED {
				t.Fatalf("unsub: %v", un)
			}
			if e := r.call(&protocol.Envelope{Op: protocol.Op_OP_UNSUB, Topic: topic}); e.Op != protocol.Op_OP_ERROR || e.Code != uint32(protocol.CodeNotSubscribed) {
				t.Fatalf("second unsub: %v", e)
			}
		})
	}
}

// TestFanOutAcrossCodecs checks that one message reaches subscribers of every
// transport and codec, and that broadcasts and pushes are told apart.
func TestFanOutAcrossCodecs(t *testing.T) {
	n := servertest.Start(t, nil)
	conns := make([]*raw, len(variants))
	sessions := make([]string, len(variants))
	for i, v := range variants {
		r, hello := connect(t, n, v, fmt.Sprintf("user%d", i))
		conns[i], sessions[i] = r, hello.Session
		if ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "match.7"}); ack.Op != protocol.Op_OP_SUBSCRIBED {
			t.Fatalf("%s sub: %v", v.name, ack)
		}
	}
	var pos struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	if st := n.API(t, "/api/publish", map[string]any{"topic": "match.7", "data": map[string]int{"hp": 90}}, &pos); st != 200 || pos.Offset != 1 {
		t.Fatalf("publish: %d %+v", st, pos)
	}
	for i, r := range conns {
		env := r.next()
		if env.Op != protocol.Op_OP_MSG || env.Kind != protocol.Kind_KIND_TOPIC || env.Offset != 1 || env.Epoch != pos.Epoch || !sameJSON(env.Data, []byte(`{"hp":90}`)) {
			t.Fatalf("%s: %v", variants[i].name, env)
		}
	}

	if st := n.API(t, "/api/broadcast", map[string]any{"data": "maintenance in 5 minutes"}, nil); st != 200 {
		t.Fatalf("broadcast: %d", st)
	}
	for i, r := range conns {
		env := r.next()
		if env.Op != protocol.Op_OP_MSG || env.Kind != protocol.Kind_KIND_BROADCAST || env.Topic != "" || !sameJSON(env.Data, []byte(`"maintenance in 5 minutes"`)) {
			t.Fatalf("%s broadcast: %v", variants[i].name, env)
		}
	}

	// A push to user2 reaches only user2; a push to a session only that session.
	if st := n.API(t, "/api/push", map[string]any{"user": "user2", "data": map[string]string{"gift": "sword"}}, nil); st != 200 {
		t.Fatalf("push: %d", st)
	}
	if st := n.API(t, "/api/push", map[string]any{"session": sessions[0], "data": 1}, nil); st != 200 {
		t.Fatalf("push session: %d", st)
	}
	// A marker publish shows that nothing else was queued before it.
	n.API(t, "/api/publish", map[string]any{"topic": "match.7", "data": "marker"}, nil)
	for i, r := range conns {
		env := r.next()
		switch i {
		case 2:
			if env.Kind != protocol.Kind_KIND_PUSH || env.Op != protocol.Op_OP_MSG || !sameJSON(env.Data, []byte(`{"gift":"sword"}`)) {
				t.Fatalf("push to user2: %v", env)
			}
			env = r.next()
		case 0:
			if env.Kind != protocol.Kind_KIND_PUSH || env.Session != sessions[0] || !sameJSON(env.Data, []byte(`1`)) {
				t.Fatalf("push to session: %v", env)
			}
			env = r.next()
		}
		if env.Kind != protocol.Kind_KIND_TOPIC || env.Offset != 2 {
			t.Fatalf("%s: expected the marker, got %v", variants[i].name, env)
		}
	}

	var st server.Stats
	n.Get(t, "/api/stats", &st)
	if st.Connections != 4 || st.Sessions != 4 || st.Topics != 1 || st.MessagesIn < 8 || st.MessagesOut < 14 || st.RSSBytes == 0 || st.HeapBytes == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestHistoryRecovery(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Broker.Memory.HistorySize = 5 })
	var pos struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	for i := 1; i <= 4; i++ {
		n.API(t, "/api/publish", map[string]any{"topic": "room.1", "data": i}, &pos)
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, _ := connect(t, n, v, "")
			ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "room.1",
				Since: &protocol.Position{Offset: 1, Epoch: pos.Epoch}})
			if ack.Op != protocol.Op_OP_SUBSCRIBED || !ack.Recovered || ack.Offset != 4 {
				t.Fatalf("sub since 1: %v", ack)
			}
			for want := uint64(2); want <= 4; want++ {
				if env := r.next(); env.Op != protocol.Op_OP_MSG || env.Offset != want {
					t.Fatalf("replay: want offset %d, got %v", want, env)
				}
			}
			// A wrong epoch cannot be recovered, and says so.
			r2, _ := connect(t, n, v, "")
			ack = r2.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "room.1",
				Since: &protocol.Position{Offset: 1, Epoch: "not-the-epoch"}})
			if ack.Op != protocol.Op_OP_SUBSCRIBED || ack.Recovered {
				t.Fatalf("sub with a stale epoch: %v", ack)
			}
		})
	}

	// Past the history size the gap cannot be filled either.
	for i := 5; i <= 12; i++ {
		n.API(t, "/api/publish", map[string]any{"topic": "room.1", "data": i}, &pos)
	}
	r, _ := connect(t, n, variants[0], "")
	ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "room.1", Since: &protocol.Position{Offset: 2, Epoch: pos.Epoch}})
	if ack.Recovered || ack.Offset != 12 {
		t.Fatalf("sub beyond history: %v", ack)
	}
}

// TestRecoveryWhilePublishing checks for no gap and no duplicate at the seam between
// replayed history and live delivery while publishes continue.
func TestRecoveryWhilePublishing(t *testing.T) {
	n := servertest.Start(t, nil)
	var pos struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	for i := 1; i <= 10; i++ {
		n.API(t, "/api/publish", map[string]any{"topic": "room.2", "data": i}, &pos)
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, _ := connect(t, n, v, "")
			start, epoch := pos.Offset, pos.Epoch
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 20; i++ {
					n.API(t, "/api/publish", map[string]any{"topic": "room.2", "data": i}, nil)
				}
			}()
			ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "room.2", Since: &protocol.Position{Offset: 5, Epoch: epoch}})
			if !ack.Recovered {
				t.Fatalf("sub since 5: %v", ack)
			}
			<-done
			pos.Offset = start + 20
			for want := uint64(6); want <= start+20; want++ {
				if env := r.next(); env.Offset != want {
					t.Fatalf("want offset %d, got %v", want, env)
				}
			}
		})
	}
}

func TestClientPublishPermission(t *testing.T) {
	n := servertest.Start(t, nil)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r, _ := connect(t, n, v, "")
			e := r.call(&protocol.Envelope{Op: protocol.Op_OP_PUB, Topic: "game.score", Data: payload(1)})
			if e.Op != protocol.Op_OP_ERROR || e.Code != uint32(protocol.CodePermissionDenied) || e.Reason == "" {
				t.Fatalf("pub to game.score: %v", e)
			}
			if ok := r.call(&protocol.Envelope{Op: protocol.Op_OP_PUB, Topic: "chat.lobby", Data: payload(1)}); ok.Op != protocol.Op_OP_PUBLISHED {
				t.Fatalf("pub to chat.lobby: %v", ok)
			}
		})
	}
}

func TestHeartbeat(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Gateway.HeartbeatInterval = 200 * time.Millisecond
		c.Hub.SweepInterval = 20 * time.Millisecond
	})
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			silent, hello := connect(t, n, v, "")
			if hello.HeartbeatMs != 200 {
				t.Fatalf("heartbeat_ms = %d", hello.HeartbeatMs)
			}
			// A client that pings keeps its connection through many intervals.
			alive, _ := connect(t, n, v, "")
			for range 10 {
				if p := alive.call(&protocol.Envelope{Op: protocol.Op_OP_PING}); p.Op != protocol.Op_OP_PONG {
					t.Fatalf("ping: %v", p)
				}
				time.Sleep(100 * time.Millisecond)
			}
			code, reason := silent.expectDisconnect()
			if code != protocol.DisconnectHeartbeat || reason == "" {
				t.Fatalf("silent client: %d %q", code, reason)
			}
		})
	}
}

func TestConnectDeadline(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Gateway.ConnectTimeout = 100 * time.Millisecond })
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := dialRaw(t, n, v)
			if code, _ := r.expectDisconnect(); code != protocol.DisconnectConnectTimeout {
				t.Fatalf("code %d", code)
			}
		})
	}
}

// TestReplayLargerThanQueue checks that a gap too large to replay within the
// session's queue bound is answered with recovered:false rather than a slow-consumer
// disconnect that would repeat on every reconnect.
func TestReplayLargerThanQueue(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Session.MaxQueueBytes = 128 << 10
		c.Transport.MaxFrameSize = 16 << 10
	})
	var pos struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	big := strings.Repeat("x", 4000)
	for range 40 { // 160 KB of history
		n.API(t, "/api/publish", map[string]any{"topic": "big", "data": big}, &pos)
	}
	r, _ := connect(t, n, variants[0], "")
	ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "big", Since: &protocol.Position{Offset: 1, Epoch: pos.Epoch}})
	if ack.Op != protocol.Op_OP_SUBSCRIBED || ack.Recovered {
		t.Fatalf("sub: %v", ack)
	}
	small, _ := connect(t, n, variants[1], "")
	ack = small.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "big", Since: &protocol.Position{Offset: 35, Epoch: pos.Epoch}})
	if !ack.Recovered {
		t.Fatalf("a small gap was not recovered: %v", ack)
	}
	if p := r.call(&protocol.Envelope{Op: protocol.Op_OP_PING}); p.Op != protocol.Op_OP_PONG {
		t.Fatalf("after refused replay: %v", p)
	}
}
