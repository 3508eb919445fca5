package hub

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/heraldgg/herald/internal/broker"
)

// presence counts, across shards, the sessions of each user and each user's
// subscriptions to each topic on this node, and records a change only when a count
// leaves or reaches zero: the cluster learns "alice is on this node" once, however
// many tabs she opens. Anonymous sessions (no user id) are not tracked.
type presence struct {
	mu      sync.Mutex
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
	if p.users[user]++; p.users[user] == 1 {
		p.pending = append(p.pending, broker.Change{Kind: broker.UserAdded, User: user})
	}
	p.mu.Unlock()
}

func (p *presence) userDown(user string) {
	p.mu.Lock()
	if p.users[user]--; p.users[user] <= 0 {
		delete(p.users, user)
		p.pending = append(p.pending, broker.Change{Kind: broker.UserRemoved, User: user})
	}
	p.mu.Unlock()
}

func (p *presence) joined(topic, user string) {
	m := membership{topic, user}
	p.mu.Lock()
	if p.members[m]++; p.members[m] == 1 {
		p.pending = append(p.pending, broker.Change{Kind: broker.TopicJoined, Topic: topic, User: user})
	}
	p.mu.Unlock()
}

func (p *presence) left(topic, user string) {
	m := membership{topic, user}
	p.mu.Lock()
	if p.members[m]--; p.members[m] <= 0 {
		delete(p.members, m)
		p.pending = append(p.pending, broker.Change{Kind: broker.TopicLeft, Topic: topic, User: user})
	}
	p.mu.Unlock()
}

// EnablePresence makes the hub track users and topic memberships for the
// cluster's presence registry. Call it before Start.
func (h *Hub) EnablePresence() { h.presence = newPresence() }

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

// Users is the number of distinct users with a session on this node. With
// presence tracked it is a counter; without (a node alone on the memory
// broker, which keeps no registry), the shards are asked, which costs a pass
// over the users: an administrative query.
func (h *Hub) Users() int {
	if p := h.presence; p != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.users)
	}
	seen := make(map[string]struct{})
	for _, sh := range h.shards {
		var part []string
		err := sh.call(context.Background(), func(sh *shard) error {
			part = slices.Collect(maps.Keys(sh.users))
			return nil
		})
		if err != nil {
			return 0
		}
		for _, u := range part {
			seen[u] = struct{}{}
		}
	}
	return len(seen)
}

// TopicUsers lists the distinct users subscribed to topic on this node, sorted,
// from the shards' own indexes: what a node alone on the memory broker answers
// for presence.
func (h *Hub) TopicUsers(ctx context.Context, topic string) ([]string, error) {
	var out []string
	for _, sh := range h.shards {
		var part []string
		err := sh.call(ctx, func(sh *shard) error {
			if set := sh.topics[topic]; set != nil {
				for _, m := range set.list {
					if m.s.User != "" {
						part = append(part, m.s.User)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
