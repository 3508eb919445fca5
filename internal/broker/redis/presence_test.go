package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/broker/brokertest"
	"github.com/heraldgg/herald/internal/broker/redis"
	"github.com/heraldgg/herald/internal/broker/redis/redistest"
)

// presenceState is a node's local presence state, as a hub would keep it.
type presenceState struct {
	node   string
	users  []string
	topics map[string][]string // topic → users
}

// changes is the whole state as changes: what a node sends on resync.
func (s presenceState) changes() []broker.Change {
	var out []broker.Change
	for _, u := range s.users {
		out = append(out, broker.Change{Kind: broker.UserAdded, User: u})
	}
	for t, us := range s.topics {
		for _, u := range us {
			out = append(out, broker.Change{Kind: broker.TopicJoined, Topic: t, User: u})
		}
	}
	return out
}

func dbSize(t testing.TB, srv *redistest.Server) string {
	t.Helper()
	n, err := srv.Do(ctxT(t, 5*time.Second), "DBSIZE")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustAnnounce(t testing.TB, b *redis.Broker, node string, ttl time.Duration) bool {
	t.Helper()
	resync, err := b.Announce(ctxT(t, 5*time.Second), broker.NodeInfo{Name: node}, ttl)
	if err != nil {
		t.Fatalf("Announce %s: %v", node, err)
	}
	return resync
}

func userNodes(t testing.TB, b *redis.Broker, user string) []string {
	t.Helper()
	nodes, err := b.UserNodes(ctxT(t, 5*time.Second), user)
	if err != nil {
		t.Fatalf("UserNodes: %v", err)
	}
	return nodes
}

// TestPresenceRestartWithoutPersistence follows the call pattern documented on
// broker.Presence through a Redis restart that loses everything: updates fail
// with ErrLapsed, Announce asks for a resync, and the resync brings the
// node's users back for the other nodes.
func TestPresenceRestartWithoutPersistence(t *testing.T) {
	srv := redistest.Start(t)
	a := newBroker(t, testConfig(srv), "a")
	start(t, a)
	c := newBroker(t, testConfig(srv), "c")
	start(t, c)
	reader := newBroker(t, testConfig(srv), "reader")
	start(t, reader)
	state := presenceState{node: "a", users: []string{"u1", "u2", "u3"}, topics: map[string][]string{"room": {"u1", "u2"}}}
	mustAnnounce(t, a, "a", time.Minute)
	mustAnnounce(t, c, "c", time.Minute)
	if err := a.UpdatePresence(ctxT(t, 5*time.Second), "a", state.changes()); err != nil {
		t.Fatal(err)
	}
	if err := c.AddUser(ctxT(t, 5*time.Second), "c", "u1"); err != nil {
		t.Fatal(err)
	}
	if got := userNodes(t, reader, "u1"); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("before the restart UserNodes = %v", got)
	}

	srv.Kill()
	if err := a.AddUser(ctxT(t, time.Second), "a", "u4"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("update with Redis down: %v, want ErrUnavailable", err)
	}
	srv.Restart()

	// Node a finds out from its next flush.
	brokertest.Eventually(t, wait, "an update to report the lapse", func() bool {
		err := a.AddUser(ctxT(t, time.Second), "a", "u4")
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
	state.users = append(state.users, "u4")
	if err := a.UpdatePresence(ctxT(t, 5*time.Second), "a", state.changes()); err != nil {
		t.Fatal(err)
	}
	// Node c finds out from its next heartbeat.
	if !mustAnnounce(t, c, "c", time.Minute) {
		t.Fatal("heartbeat after the restart did not ask for a resync")
	}
	if err := c.AddUser(ctxT(t, 5*time.Second), "c", "u1"); err != nil {
		t.Fatal(err)
	}
	if got := userNodes(t, reader, "u1"); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after the resync UserNodes(u1) = %v", got)
	}
	if got := userNodes(t, reader, "u4"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the resync UserNodes(u4) = %v", got)
	}
	room, err := reader.TopicUsers(ctxT(t, 5*time.Second), "room")
	if err != nil {
		t.Fatal(err)
	}
	if want := []broker.PresenceEntry{{User: "u1", Node: "a"}, {User: "u2", Node: "a"}}; !slices.Equal(room, want) {
		t.Fatalf("after the resync TopicUsers = %v, want %v", room, want)
	}
}

// TestPresenceReaper checks that the registrations of a node that died without
// leaving are removed from Redis, not only hidden, once a live node announces.
func TestPresenceReaper(t *testing.T) {
	srv := redistest.Start(t)
	dead := newBroker(t, testConfig(srv), "dead")
	start(t, dead)
	live := newBroker(t, testConfig(srv), "live")
	start(t, live)
	mustAnnounce(t, live, "live", time.Minute)
	mustAnnounce(t, dead, "dead", time.Minute)
	var changes []broker.Change
	for i := range 1500 { // several reaping steps
		u := fmt.Sprint("u", i)
		changes = append(changes, broker.Change{Kind: broker.UserAdded, User: u})
		if i%2 == 0 {
			changes = append(changes, broker.Change{Kind: broker.TopicJoined, Topic: fmt.Sprint("t", i%7), User: u})
		}
	}
	if err := dead.UpdatePresence(ctxT(t, 5*time.Second), "dead", changes); err != nil {
		t.Fatal(err)
	}
	mustAnnounce(t, dead, "dead", 100*time.Millisecond) // its last heartbeat
	// What is left is live's announcement: the alive zset, info and cur hashes.
	brokertest.Eventually(t, wait, "the dead node's keys to be gone", func() bool {
		mustAnnounce(t, live, "live", time.Minute)
		return dbSize(t, srv) == "3"
	})
}

// TestPresenceLeaveRemovesEverything checks that Leave removes a node's
// registrations itself, before it returns.
func TestPresenceLeaveRemovesEverything(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, testConfig(srv), "n")
	start(t, b)
	mustAnnounce(t, b, "n", time.Minute)
	var changes []broker.Change
	for i := range 1200 {
		changes = append(changes,
			broker.Change{Kind: broker.UserAdded, User: fmt.Sprint("u", i)},
			broker.Change{Kind: broker.TopicJoined, Topic: fmt.Sprint("t", i%3), User: fmt.Sprint("u", i)})
	}
	if err := b.UpdatePresence(ctxT(t, 5*time.Second), "n", changes); err != nil {
		t.Fatal(err)
	}
	if err := b.Leave(ctxT(t, 5*time.Second), "n"); err != nil {
		t.Fatal(err)
	}
	if n := dbSize(t, srv); n != "0" {
		t.Fatalf("%s keys left after Leave", n)
	}
}

// BenchmarkUpdatePresence measures one flush of 1000 changes, the size a
// node of a million users sends at ~10k connects per second.
func BenchmarkUpdatePresence(b *testing.B) {
	srv := redistest.Start(b)
	br := newBroker(b, redis.Config{Address: srv.URL()}, "bench")
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
	srv := redistest.Start(b)
	br := newBroker(b, redis.Config{Address: srv.URL()}, "bench")
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
