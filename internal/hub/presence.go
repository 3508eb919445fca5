package hub

import (
	"sync"

	"github.com/heraldgg/herald/internal/broker"
)

// presence counts, across shards, the sessions of each user and each user's
// subscriptions to each topic on this node, and records a change only when a count
// leaves or reaches zero: the cluster learns "alice is on this node" once, however
// many tabs she opens. Anonymous sessions (no user id) are not tracked.
//
// A local presence (a single node on the memory broker) keeps the counts to
// answer queries itself and records no changes: there is no registry to feed,
// and a second copy of every user and membership in the broker cost a single
// node ~850 bytes per connection.
type presence struct {
	mu      sync.Mutex
	local   bool
	users   map[string]int
	members map[membership]int
	pending []broker.Change
}

type membership struct{ topic, user string }

func newPresence() *presence {
	return &presence{users: make(map[string]int), members: make(map[membership]int)}
}

func (p *presence) userUp(user string) {
	p.mu.Lock()
	if p.users[user]++; p.users[user] == 1 && !p.local {
		p.pending = append(p.pending, broker.Change{Kind: broker.UserAdded, User: user})
	}
	p.mu.Unlock()
}

func (p *presence) userDown(user string) {
	p.mu.Lock()
	if p.users[user]--; p.users[user] <= 0 {
		delete(p.users, user)
		if !p.local {
			p.pending = append(p.pending, broker.Change{Kind: broker.UserRemoved, User: user})
		}
	}
	p.mu.Unlock()
}

func (p *presence) joined(topic, user string) {
	m := membership{topic, user}
	p.mu.Lock()
	if p.members[m]++; p.members[m] == 1 && !p.local {
		p.pending = append(p.pending, broker.Change{Kind: broker.TopicJoined, Topic: topic, User: user})
	}
	p.mu.Unlock()
}

func (p *presence) left(topic, user string) {
	m := membership{topic, user}
	p.mu.Lock()
	if p.members[m]--; p.members[m] <= 0 {
		delete(p.members, m)
		if !p.local {
			p.pending = append(p.pending, broker.Change{Kind: broker.TopicLeft, Topic: topic, User: user})
		}
	}
	p.mu.Unlock()
}

// EnablePresence makes the hub track users and topic memberships for the
// cluster's presence registry. Call it before Start.
func (h *Hub) EnablePresence() { h.presence = newPresence() }

// EnableLocalPresence makes the hub track users and topic memberships to answer
// Users and TopicUsers itself, for a node alone on the memory broker. Call it
// before Start.
func (h *Hub) EnableLocalPresence() {
	h.presence = &presence{local: true, users: make(map[string]int), members: make(map[membership]int)}
}

// TopicUsers lists the users subscribed to topic on this node, in no order
// (none when presence is not tracked). It scans every membership: an
// administrative query, not a hot path.
func (h *Hub) TopicUsers(topic string) []string {
	p := h.presence
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for m := range p.members {
		if m.topic == topic {
			out = append(out, m.user)
		}
	}
	return out
}

// TakePresence returns the changes since the last call, in order.
func (h *Hub) TakePresence() []broker.Change {
	p := h.presence
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.pending
	p.pending = nil
	return out
}

// ResyncPresence returns every current user and membership as changes and drops
// the pending ones, which the snapshot supersedes; for a registry that lost this
// node's entries.
func (h *Hub) ResyncPresence() []broker.Change {
	p := h.presence
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]broker.Change, 0, len(p.users)+len(p.members))
	for u := range p.users {
		out = append(out, broker.Change{Kind: broker.UserAdded, User: u})
	}
	for m := range p.members {
		out = append(out, broker.Change{Kind: broker.TopicJoined, Topic: m.topic, User: m.user})
	}
	p.pending = nil
	return out
}

// Users is the number of distinct users with a session on this node (0 when
// presence is not tracked).
func (h *Hub) Users() int {
	p := h.presence
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.users)
}
