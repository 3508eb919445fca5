package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/broker/nats/natstest"
	"github.com/heraldgg/herald/internal/broker/redis/redistest"
	"github.com/heraldgg/herald/internal/config"
	"github.com/heraldgg/herald/internal/server/servertest"
	"github.com/heraldgg/herald/protocol"
)

// TestCluster runs two nodes on one real Redis, and two on one real NATS, and
// checks every kind of fan-out crosses nodes, and that presence sees both.
func TestCluster(t *testing.T) {
	brokers := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string { return redistest.Start(t).URL() }},
		{"nats", func(t *testing.T) string { return natstest.Start(t).URL() }},
	}
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			node := func(name string) *servertest.Node {
				return servertest.Start(t, func(c *config.Config) {
					c.Node = name
					c.Broker.URL = url
					c.Cluster.PresenceTTL = 2 * time.Second
					c.Cluster.PresenceFlush = 20 * time.Millisecond
				})
			}
			a, bn := node("a-"+b.name), node("b-"+b.name)
			alice, _ := connect(t, a, variants[0], "alice")
			bob, _ := connect(t, bn, variants[3], "bob")
			for _, r := range []*raw{alice, bob} {
				if ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "chat.world"}); ack.Op != protocol.Op_OP_SUBSCRIBED {
					t.Fatalf("sub: %v", ack)
				}
			}

			// A client's publish on node a reaches node b's subscriber, same offset.
			id := alice.send(&protocol.Envelope{Op: protocol.Op_OP_PUB, Topic: "chat.world", Data: []byte(`"hi"`)})
			var offset uint64
			for got := 0; got < 2; got++ {
				env := alice.next()
				if env.Op == protocol.Op_OP_PUBLISHED && env.Id == id {
					offset = env.Offset
				}
			}
			if env := bob.next(); env.Op != protocol.Op_OP_MSG || env.Topic != "chat.world" || env.Offset != offset || offset == 0 {
				t.Fatalf("bob: %v (offset %d)", env, offset)
			}

			// Broadcast from b's admin reaches both; a push to bob from a's admin
			// reaches bob on b.
			bn.API(t, "/api/broadcast", map[string]any{"data": "all"}, nil)
			for _, r := range []*raw{alice, bob} {
				if env := r.next(); env.Kind != protocol.Kind_KIND_BROADCAST {
					t.Fatalf("broadcast: %v", env)
				}
			}
			servertest.Eventually(t, 10*time.Second, "bob registered in the cluster", func() bool {
				var p struct {
					Users []struct{ User, Node string }
				}
				a.Get(t, "/api/presence?topic=chat.world", &p)
				return len(p.Users) == 2
			})
			a.API(t, "/api/push", map[string]any{"user": "bob", "data": "for bob"}, nil)
			if env := bob.next(); env.Kind != protocol.Kind_KIND_PUSH || !sameJSON(env.Data, []byte(`"for bob"`)) {
				t.Fatalf("push: %v", env)
			}

			var nodes struct {
				Nodes []struct {
					Name     string
					Sessions int
				}
			}
			a.Get(t, "/api/nodes", &nodes)
			if len(nodes.Nodes) != 2 {
				t.Fatalf("nodes: %+v", nodes)
			}
			var p struct {
				Users []struct{ User, Node string }
			}
			bn.Get(t, "/api/presence?topic=chat.world", &p)
			if got := fmt.Sprint(p.Users); got != fmt.Sprintf("[{alice a-%s} {bob b-%s}]", b.name, b.name) {
				t.Fatalf("presence: %s", got)
			}
		})
	}
}

// TestPresenceAlone: a node on the memory broker answers presence and nodes
// from its own sessions, and forgets a user who leaves.
func TestPresenceAlone(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Node = "solo" })
	alice, _ := connect(t, n, variants[0], "alice")
	bob, _ := connect(t, n, variants[3], "bob")
	for _, r := range []*raw{alice, bob} {
		if ack := r.call(&protocol.Envelope{Op: protocol.Op_OP_SUB, Topic: "chat.world"}); ack.Op != protocol.Op_OP_SUBSCRIBED {
			t.Fatalf("sub: %v", ack)
		}
	}
	var p struct {
		Users []struct{ User, Node string }
	}
	n.Get(t, "/api/presence?topic=chat.world", &p)
	if got := fmt.Sprint(p.Users); got != "[{alice solo} {bob solo}]" {
		t.Fatalf("presence: %s", got)
	}
	var nodes struct {
		Nodes []struct {
			Name     string
			Sessions int
			Users    int
		}
	}
	n.Get(t, "/api/nodes", &nodes)
	if got := fmt.Sprint(nodes.Nodes); got != "[{solo 2 2}]" {
		t.Fatalf("nodes: %s", got)
	}
	if ack := bob.call(&protocol.Envelope{Op: protocol.Op_OP_UNSUB, Topic: "chat.world"}); ack.Op != protocol.Op_OP_UNSUBSCRIBED {
		t.Fatalf("unsub: %v", ack)
	}
	n.Get(t, "/api/presence?topic=chat.world", &p)
	if got := fmt.Sprint(p.Users); got != "[{alice solo}]" {
		t.Fatalf("presence after bob left: %s", got)
	}
}
