package brokertest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldgg/herald/internal/broker"
)

const (
	// longTTL outlives every presence test: a node announced with it stays
	// live until the test makes it leave.
	longTTL = time.Minute
	// shortTTL is the TTL of a node a test lets die: the shortest every
	// backend keeps (JetStream counts whole seconds).
	shortTTL = time.Second
	// expiry bounds the wait for a short-TTL node to be taken for dead.
	expiry = 15 * time.Second
)

var nameSeq atomic.Uint64

// unique returns a name no other test uses, on a shared backend too.
func unique(t testing.TB, what string) string {
	return fmt.Sprintf("%s-%d-%d-%s", what, time.Now().UnixNano(), nameSeq.Add(1), sanitize(t.Name()))
}

// presence returns b's Presence side.
func presence(t testing.TB, b broker.Broker) broker.Presence {
	t.Helper()
	p, ok := b.(broker.Presence)
	if !ok {
		t.Fatalf("%T does not implement broker.Presence", b)
	}
	return p
}

// announce announces node through p with ttl and makes it leave when the
// test ends, returning what Announce reported.
func announce(t testing.TB, p broker.Presence, node string, ttl time.Duration) bool {
	t.Helper()
	resync, err := p.Announce(ctx(t), broker.NodeInfo{Name: node, ClientAddr: "127.0.0.1:7000"}, ttl)
	if err != nil {
		t.Fatalf("Announce %s: %v", node, err)
	}
	t.Cleanup(func() { _ = p.Leave(ctx(t), node) })
	return resync
}

func userNodes(t testing.TB, p broker.Presence, user string) []string {
	t.Helper()
	nodes, err := p.UserNodes(ctx(t), user)
	if err != nil {
		t.Fatalf("UserNodes %s: %v", user, err)
	}
	return nodes
}

func topicUsers(t testing.TB, p broker.Presence, topic string) []broker.PresenceEntry {
	t.Helper()
	entries, err := p.TopicUsers(ctx(t), topic)
	if err != nil {
		t.Fatalf("TopicUsers %s: %v", topic, err)
	}
	return entries
}

// nodeNames returns the names of the live nodes among want, in order.
func nodeNames(t testing.TB, p broker.Presence, want ...string) []string {
	t.Helper()
	nodes, err := p.Nodes(ctx(t))
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	var out []string
	for _, n := range nodes {
		if slices.Contains(want, n.Name) {
			out = append(out, n.Name)
		}
	}
	return out
}

func update(t testing.TB, p broker.Presence, node string, changes ...broker.Change) {
	t.Helper()
	if err := p.UpdatePresence(ctx(t), node, changes); err != nil {
		t.Fatalf("UpdatePresence %s: %v", node, err)
	}
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// same reports equal contents, nil and empty alike.
func same[T comparable](a, b []T) bool { return slices.Equal(a, b) }

func added(user string) broker.Change   { return broker.Change{Kind: broker.UserAdded, User: user} }
func removed(user string) broker.Change { return broker.Change{Kind: broker.UserRemoved, User: user} }
func joined(topic, user string) broker.Change {
	return broker.Change{Kind: broker.TopicJoined, User: user, Topic: topic}
}
func left(topic, user string) broker.Change {
	return broker.Change{Kind: broker.TopicLeft, User: user, Topic: topic}
}

// runPresence is the part of the suite about broker.Presence.
func runPresence(t *testing.T, f Factory) {
	t.Run("PresenceAnnounce", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		node := unique(t, "node")
		started := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
		info := broker.NodeInfo{Name: node, ClientAddr: "10.0.0.1:7000", Version: "v1", Connections: 3,
			Sessions: 4, Users: 2, StartedAt: started, Meta: map[string]string{"zone": "a"}}
		resync, err := p.Announce(ctx(t), info, longTTL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Leave(ctx(t), node) })
		if !resync {
			t.Error("first announcement did not ask for a resync")
		}
		info.Connections = 5
		if resync, err = p.Announce(ctx(t), info, longTTL); err != nil || resync {
			t.Fatalf("refresh: resync=%v err=%v, want false, nil", resync, err)
		}
		nodes, err := p.Nodes(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(nodes, func(n broker.NodeInfo) bool { return n.Name == node })
		if i < 0 {
			t.Fatalf("Nodes %v lacks %s", nodes, node)
		}
		got := nodes[i]
		if got.ClientAddr != info.ClientAddr || got.Version != "v1" || got.Connections != 5 || got.Sessions != 4 ||
			got.Users != 2 || !got.StartedAt.Equal(started) || got.Meta["zone"] != "a" || got.AnnouncedAt.IsZero() {
			t.Errorf("Nodes gave %+v for announced %+v", got, info)
		}
		if !slices.IsSortedFunc(nodes, func(a, b broker.NodeInfo) int { return cmp.Compare(a.Name, b.Name) }) {
			t.Error("Nodes not sorted by name")
		}
		if _, err := p.Announce(ctx(t), broker.NodeInfo{}, longTTL); err == nil {
			t.Error("announce without a name succeeded")
		}
	})

	t.Run("PresenceUsersAndTopics", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		node, topic := unique(t, "node"), uniqueTopic(t)
		u1, u2 := unique(t, "u1"), unique(t, "u2")
		announce(t, p, node, longTTL)
		if got := userNodes(t, p, u1); len(got) != 0 {
			t.Fatalf("unknown user on %v", got)
		}
		for range 2 { // adding twice is adding once
			if err := p.AddUser(ctx(t), node, u1); err != nil {
				t.Fatal(err)
			}
		}
		if got := userNodes(t, p, u1); !same(got, []string{node}) {
			t.Fatalf("UserNodes = %v, want [%s]", got, node)
		}
		if err := p.JoinTopic(ctx(t), node, topic, u2); err != nil {
			t.Fatal(err)
		}
		if err := p.JoinTopic(ctx(t), node, topic, u1); err != nil {
			t.Fatal(err)
		}
		want := []broker.PresenceEntry{{User: u1, Node: node}, {User: u2, Node: node}}
		if got := topicUsers(t, p, topic); !same(got, want) {
			t.Fatalf("TopicUsers = %v, want %v", got, want)
		}
		if err := p.LeaveTopic(ctx(t), node, topic, u1); err != nil {
			t.Fatal(err)
		}
		if err := p.RemoveUser(ctx(t), node, u1); err != nil {
			t.Fatal(err)
		}
		if err := p.RemoveUser(ctx(t), node, u1); err != nil {
			t.Fatalf("removing what is gone: %v", err)
		}
		if got := userNodes(t, p, u1); len(got) != 0 {
			t.Errorf("removed user still on %v", got)
		}
		if got := topicUsers(t, p, topic); !same(got, want[1:]) {
			t.Errorf("TopicUsers = %v, want %v", got, want[1:])
		}
	})

	t.Run("PresenceBatch", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		node, topic := unique(t, "node"), uniqueTopic(t)
		announce(t, p, node, longTTL)
		const n = 600 // several chunks in every implementation that chunks
		users := make([]string, n)
		var changes []broker.Change
		for i := range users {
			users[i] = fmt.Sprintf("%s-%d", unique(t, "u"), i)
			changes = append(changes, added(users[i]), joined(topic, users[i]))
		}
		// Order matters within a batch: the last change of a user wins.
		changes = append(changes, removed(users[0]), left(topic, users[1]),
			removed(users[2]), added(users[2]), left(topic, users[3]), joined(topic, users[3]))
		update(t, p, node, changes...)
		for i, u := range users {
			want := []string{node}
			if i == 0 {
				want = nil
			}
			if got := userNodes(t, p, u); !same(got, want) {
				t.Fatalf("user %d on %v, want %v", i, got, want)
			}
		}
		got := topicUsers(t, p, topic)
		if len(got) != n-1 || slices.ContainsFunc(got, func(e broker.PresenceEntry) bool { return e.User == users[1] }) {
			t.Fatalf("TopicUsers has %d entries, want %d without %s", len(got), n-1, users[1])
		}
		if !slices.IsSortedFunc(got, broker.ComparePresence) {
			t.Error("TopicUsers not sorted")
		}
		if err := p.UpdatePresence(ctx(t), node, nil); err != nil {
			t.Errorf("empty batch: %v", err)
		}
	})

	t.Run("PresenceCrowdedTopic", func(t *testing.T) {
		// More users than some backends return in one read.
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		node, topic := unique(t, "node"), uniqueTopic(t)
		announce(t, p, node, longTTL)
		const n = 2500
		changes := make([]broker.Change, n)
		for i := range changes {
			changes[i] = joined(topic, fmt.Sprintf("user-%05d", i))
		}
		update(t, p, node, changes...)
		got := topicUsers(t, p, topic)
		if len(got) != n {
			t.Fatalf("TopicUsers has %d entries, want %d", len(got), n)
		}
		for i, e := range got {
			if want := fmt.Sprintf("user-%05d", i); e.User != want || e.Node != node {
				t.Fatalf("entry %d = %+v, want %s on %s", i, e, want, node)
			}
		}
	})

	t.Run("PresenceRefusesBadChanges", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		node := unique(t, "node")
		announce(t, p, node, longTTL)
		cases := []struct {
			name   string
			change broker.Change
			is     error
		}{
			{"no topic", broker.Change{Kind: broker.TopicJoined, User: "u"}, broker.ErrBadTopic},
			{"no user", broker.Change{Kind: broker.UserAdded}, nil},
			{"unknown kind", broker.Change{Kind: 99, User: "u"}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				err := p.UpdatePresence(ctx(t), node, []broker.Change{added("ok"), tc.change})
				if err == nil || tc.is != nil && !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
				if got := userNodes(t, p, "ok"); len(got) != 0 {
					t.Errorf("a refused batch was applied in part: ok on %v", got)
				}
			})
		}
	})

	t.Run("PresenceNotAnnounced", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		err := p.AddUser(ctx(t), unique(t, "node"), "u")
		if !errors.Is(err, broker.ErrLapsed) {
			t.Fatalf("AddUser for a node never announced: %v, want ErrLapsed", err)
		}
	})

	t.Run("PresenceLeave", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		node, topic, user := unique(t, "node"), uniqueTopic(t), unique(t, "u")
		announce(t, p, node, longTTL)
		update(t, p, node, added(user), joined(topic, user))
		if err := p.Leave(ctx(t), node); err != nil {
			t.Fatal(err)
		}
		if got := userNodes(t, p, user); len(got) != 0 {
			t.Errorf("user of a node that left is on %v", got)
		}
		if got := topicUsers(t, p, topic); len(got) != 0 {
			t.Errorf("topic of a node that left has %v", got)
		}
		if got := nodeNames(t, p, node); len(got) != 0 {
			t.Errorf("node that left is listed")
		}
		if err := p.AddUser(ctx(t), node, user); !errors.Is(err, broker.ErrLapsed) {
			t.Errorf("AddUser after Leave: %v, want ErrLapsed", err)
		}
		if !announce(t, p, node, longTTL) {
			t.Error("announcing again after Leave did not ask for a resync")
		}
		if got := userNodes(t, p, user); len(got) != 0 {
			t.Errorf("registrations came back with the new announcement: user on %v", got)
		}
	})

	t.Run("PresenceExpiry", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		alive, dying := unique(t, "alive"), unique(t, "dying")
		topic, user := uniqueTopic(t), unique(t, "u")
		announce(t, p, alive, longTTL)
		announce(t, p, dying, longTTL)
		update(t, p, alive, added(user), joined(topic, user))
		update(t, p, dying, added(user), joined(topic, user))
		if got, want := userNodes(t, p, user), sorted(alive, dying); !same(got, want) {
			t.Fatalf("UserNodes = %v, want %v", got, want)
		}
		// The refresh shortens the TTL; the node then stops announcing.
		if resync, err := p.Announce(ctx(t), broker.NodeInfo{Name: dying}, shortTTL); err != nil || resync {
			t.Fatalf("refresh: resync=%v err=%v", resync, err)
		}
		Eventually(t, expiry, "the silent node to be taken for dead", func() bool {
			return same(userNodes(t, p, user), []string{alive}) &&
				same(topicUsers(t, p, topic), []broker.PresenceEntry{{User: user, Node: alive}}) &&
				same(nodeNames(t, p, alive, dying), []string{alive})
		})
		if err := p.AddUser(ctx(t), dying, user); !errors.Is(err, broker.ErrLapsed) {
			t.Fatalf("AddUser for a lapsed node: %v, want ErrLapsed", err)
		}
		if !announce(t, p, dying, longTTL) {
			t.Fatal("announcing a lapsed node did not ask for a resync")
		}
		if got := userNodes(t, p, user); !same(got, []string{alive}) {
			t.Fatalf("lapsed registrations came back: UserNodes = %v", got)
		}
		update(t, p, dying, added(user)) // the resync
		if got, want := userNodes(t, p, user), sorted(alive, dying); !same(got, want) {
			t.Fatalf("after resync UserNodes = %v, want %v", got, want)
		}
	})

	t.Run("PresenceClosedRefuses", func(t *testing.T) {
		b, _ := start(t, f, "n1")
		p := presence(t, b)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Announce(ctx(t), broker.NodeInfo{Name: "n1"}, longTTL); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Announce after Close: %v, want ErrClosed", err)
		}
		if _, err := p.UserNodes(ctx(t), "u"); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("UserNodes after Close: %v, want ErrClosed", err)
		}
	})

	if !f.Shared {
		return
	}

	t.Run("PresenceAcrossNodes", func(t *testing.T) {
		na, nb := unique(t, "a"), unique(t, "b")
		ba, _ := start(t, f, na)
		bb, _ := start(t, f, nb)
		pa, pb := presence(t, ba), presence(t, bb)
		topic, u, u2 := uniqueTopic(t), unique(t, "u"), unique(t, "u2")
		announce(t, pa, na, longTTL)
		announce(t, pb, nb, longTTL)
		update(t, pa, na, added(u), joined(topic, u))
		update(t, pb, nb, added(u), added(u2), joined(topic, u2))
		both := sorted(na, nb)
		wantTopic := []broker.PresenceEntry{{User: u, Node: na}, {User: u2, Node: nb}}
		slices.SortFunc(wantTopic, broker.ComparePresence)
		for name, p := range map[string]broker.Presence{"a": pa, "b": pb} {
			if got := userNodes(t, p, u); !same(got, both) {
				t.Errorf("from %s: UserNodes(u) = %v, want %v", name, got, both)
			}
			if got := userNodes(t, p, u2); !same(got, []string{nb}) {
				t.Errorf("from %s: UserNodes(u2) = %v, want [%s]", name, got, nb)
			}
			if got := topicUsers(t, p, topic); !same(got, wantTopic) {
				t.Errorf("from %s: TopicUsers = %v, want %v", name, got, wantTopic)
			}
			if got := nodeNames(t, p, na, nb); !same(got, both) {
				t.Errorf("from %s: Nodes = %v, want %v", name, got, both)
			}
		}
		// b stops announcing: a must stop seeing it and its users.
		if _, err := pb.Announce(ctx(t), broker.NodeInfo{Name: nb}, shortTTL); err != nil {
			t.Fatal(err)
		}
		Eventually(t, expiry, "node b to be taken for dead on node a", func() bool {
			return same(userNodes(t, pa, u), []string{na}) && len(userNodes(t, pa, u2)) == 0 &&
				same(topicUsers(t, pa, topic), []broker.PresenceEntry{{User: u, Node: na}}) &&
				same(nodeNames(t, pa, na, nb), []string{na})
		})
	})

	t.Run("PresenceTakeover", func(t *testing.T) {
		// A node killed and restarted under its name at once: the new
		// process must not inherit the old one's registrations.
		node, user := unique(t, "node"), unique(t, "u")
		old, _ := start(t, f, node)
		pOld := presence(t, old)
		announce(t, pOld, node, longTTL)
		update(t, pOld, node, added(user))
		succ, _ := start(t, f, node)
		pNew := presence(t, succ)
		if !announce(t, pNew, node, longTTL) {
			t.Fatal("taking over a node's name did not ask for a resync")
		}
		if got := userNodes(t, pNew, user); len(got) != 0 {
			t.Fatalf("the new process inherited registrations: user on %v", got)
		}
		if got := nodeNames(t, pNew, node); !same(got, []string{node}) {
			t.Fatalf("Nodes = %v, want [%s]", got, node)
		}
		update(t, pNew, node, added(user))
		if got := userNodes(t, pOld, user); !same(got, []string{node}) {
			t.Fatalf("UserNodes = %v, want [%s]", got, node)
		}
	})
}
