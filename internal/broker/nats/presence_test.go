package nats_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/brokertest"
	"github.com/heraldgg/herald/internal/broker/nats"
	"github.com/heraldgg/herald/internal/broker/nats/natstest"
)

func mustAnnounce(t testing.TB, b *nats.Broker, node string, ttl time.Duration) bool {
	t.Helper()
	resync, err := b.Announce(ctxT(t, 5*time.Second), broker.NodeInfo{Name: node}, ttl)
	if err != nil {
		t.Fatalf("Announce %s: %v", node, err)
	}
	return resync
}

func userNodes(t testing.TB, b *nats.Broker, user string) []string {
	t.Helper()
	nodes, err := b.UserNodes(ctxT(t, 5*time.Second), user)
	if err != nil {
		t.Fatalf("UserNodes: %v", err)
	}
	return nodes
}

// storedMsgs returns how many messages the presence bucket of kind holds.
func storedMsgs(t testing.TB, srv *natstest.Server, kind string) uint64 {
	t.Helper()
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctxT(t, 5*time.Second), "KV_"+nats.DefaultStream+"_"+kind)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func manyChanges(n int) []broker.Change {
	var changes []broker.Change
	for i := range n {
		u := fmt.Sprint("u", i)
		changes = append(changes,
			broker.Change{Kind: broker.UserAdded, User: u},
			broker.Change{Kind: broker.TopicJoined, Topic: fmt.Sprint("t", i%7), User: u})
	}
	return changes
}

// TestPresenceLostStore follows the call pattern documented on
// broker.Presence through a server that loses its store: updates fail with
// ErrLapsed, Announce recreates the buckets and asks for a resync, and the
// resync brings the node's users back for the other nodes.
func TestPresenceLostStore(t *testing.T) {
	srv := natstest.Start(t)
	a := newBroker(t, testConfig(srv), "a")
	start(t, a)
	reader := newBroker(t, testConfig(srv), "reader")
	start(t, reader)
	mustAnnounce(t, a, "a", time.Minute)
	state := []broker.Change{{Kind: broker.UserAdded, User: "u1"}, {Kind: broker.TopicJoined, Topic: "room", User: "u1"}}
	if err := a.UpdatePresence(ctxT(t, 5*time.Second), "a", state); err != nil {
		t.Fatal(err)
	}
	if got := userNodes(t, reader, "u1"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("before the restart UserNodes = %v", got)
	}

	srv.RestartWiped()
	brokertest.Eventually(t, wait, "an update to report the lapse", func() bool {
		err := a.AddUser(ctxT(t, time.Second), "a", "u2")
		if err != nil && !errors.Is(err, broker.ErrLapsed) && !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("update after the restart: %v", err)
		}
		return errors.Is(err, broker.ErrLapsed)
	})
	// The reader sees the loss once it is connected again.
	brokertest.Eventually(t, wait, "the reader to see the loss", func() bool {
		nodes, err := reader.UserNodes(ctxT(t, time.Second), "u1")
		return err == nil && len(nodes) == 0
	})
	if !mustAnnounce(t, a, "a", time.Minute) {
		t.Fatal("Announce after the lapse did not ask for a resync")
	}
	state = append(state, broker.Change{Kind: broker.UserAdded, User: "u2"})
	if err := a.UpdatePresence(ctxT(t, 5*time.Second), "a", state); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u1", "u2"} {
		if got := userNodes(t, reader, u); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("after the resync UserNodes(%s) = %v", u, got)
		}
	}
	room, err := reader.TopicUsers(ctxT(t, 5*time.Second), "room")
	if err != nil {
		t.Fatal(err)
	}
	if want := []broker.PresenceEntry{{User: "u1", Node: "a"}}; !slices.Equal(room, want) {
		t.Fatalf("after the resync TopicUsers = %v, want %v", room, want)
	}
}

// TestPresenceSurvivesRestart checks that a restart keeping the store keeps
// presence, and that a node announcing again within its TTL is not asked to
// resync.
func TestPresenceSurvivesRestart(t *testing.T) {
	srv := natstest.Start(t)
	a := newBroker(t, testConfig(srv), "a")
	start(t, a)
	mustAnnounce(t, a, "a", time.Minute)
	if err := a.AddUser(ctxT(t, 5*time.Second), "a", "u"); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	brokertest.Eventually(t, wait, "the node to announce again", func() bool {
		resync, err := a.Announce(ctxT(t, time.Second), broker.NodeInfo{Name: "a"}, time.Minute)
		if err == nil && resync {
			t.Fatal("a restart that kept the store asked for a resync")
		}
		return err == nil
	})
	if got := userNodes(t, a, "u"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the restart UserNodes = %v", got)
	}
}

// TestPresenceReaper checks that the registrations of a node that died without
// leaving are purged from the buckets, not only hidden, once a live node
// announces.
func TestPresenceReaper(t *testing.T) {
	srv := natstest.Start(t)
	dead := newBroker(t, testConfig(srv), "dead")
	start(t, dead)
	live := newBroker(t, testConfig(srv), "live")
	start(t, live)
	mustAnnounce(t, live, "live", time.Minute)
	mustAnnounce(t, dead, "dead", time.Minute)
	if err := dead.UpdatePresence(ctxT(t, 5*time.Second), "dead", manyChanges(1500)); err != nil {
		t.Fatal(err)
	}
	mustAnnounce(t, dead, "dead", time.Second) // its last heartbeat
	brokertest.Eventually(t, wait, "the dead node's registrations to be purged", func() bool {
		mustAnnounce(t, live, "live", time.Minute)
		// live.live and inc.live.<inc> are all that is left.
		return storedMsgs(t, srv, "users") == 0 && storedMsgs(t, srv, "topics") == 0 &&
			storedMsgs(t, srv, "nodes") == 2
	})
}

// TestPresenceLeaveRemovesEverything checks that Leave purges a node's
// registrations itself, before it returns.
func TestPresenceLeaveRemovesEverything(t *testing.T) {
	srv := natstest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	start(t, b)
	mustAnnounce(t, b, "n", time.Minute)
	if err := b.UpdatePresence(ctxT(t, 5*time.Second), "n", manyChanges(1200)); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctxT(t, 5*time.Second), "n"); err != nil {
		t.Fatal(err)
	}
	if u, tp := storedMsgs(t, srv, "users"), storedMsgs(t, srv, "topics"); u != 0 || tp != 0 {
		t.Fatalf("%d users and %d topic registrations left after Leave", u, tp)
	}
	// What is left is the purge marker of live.n, which expires by itself.
	brokertest.Eventually(t, wait, "the live record's purge marker to expire", func() bool {
		return storedMsgs(t, srv, "nodes") == 0
	})
}

// BenchmarkUpdatePresence measures one flush of 1000 changes, the size a
// node of a million users sends at ~10k connects per second.
func BenchmarkUpdatePresence(b *testing.B) {
	srv := natstest.Start(b)
	br := newBroker(b, nats.Config{URL: srv.URL()}, "bench")
	if err := br.Start(context.Background(), brokertest.NewRecorder()); err != nil {
		b.Fatal(err)
	}
	if _, err := br.Announce(context.Background(), broker.NodeInfo{Name: "bench"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	changes := make([]broker.Change, 1000)
	n := 0
	for b.Loop() {
		for i := range changes {
			n++
			changes[i] = broker.Change{Kind: broker.UserAdded, User: fmt.Sprint("user", n)}
		}
		if err := br.UpdatePresence(context.Background(), "bench", changes); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/change")
}

// BenchmarkUserNodes measures the lookup a push to a user makes.
func BenchmarkUserNodes(b *testing.B) {
	srv := natstest.Start(b)
	br := newBroker(b, nats.Config{URL: srv.URL()}, "bench")
	if err := br.Start(context.Background(), brokertest.NewRecorder()); err != nil {
		b.Fatal(err)
	}
	if _, err := br.Announce(context.Background(), broker.NodeInfo{Name: "bench"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	if err := br.AddUser(context.Background(), "bench", "u"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.UserNodes(context.Background(), "u"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
