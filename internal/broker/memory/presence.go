package memory

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/heraldgg/herald/internal/broker"
)

var _ broker.Presence = (*Broker)(nil)

// presence is the shared state of the nodes announced through this broker —
// normally just this one, but any name works, which tests use.
type presence struct {
	nodes map[string]*nodeState               // by name
	users map[string]map[string]struct{}      // user → names of nodes holding it
	topic map[string]map[topicMember]struct{} // topic → who is present
}

type topicMember struct{ user, node string }

type nodeState struct {
	info    broker.NodeInfo
	expires time.Time
	users   map[string]struct{}
	topics  map[topicKey]struct{}
}

type topicKey struct{ topic, user string }

func newPresence() presence {
	return presence{
		nodes: make(map[string]*nodeState),
		users: make(map[string]map[string]struct{}),
		topic: make(map[string]map[topicMember]struct{}),
	}
}

// liveLocked returns node's state if its announcement has not run out. One
// that has is dropped with its registrations, so lapsed nodes cost nothing
// once looked at.
func (b *Broker) liveLocked(node string, now time.Time) *nodeState {
	n := b.pres.nodes[node]
	if n == nil {
		return nil
	}
	if !now.Before(n.expires) {
		b.dropLocked(node, n)
		return nil
	}
	return n
}

func (b *Broker) dropLocked(node string, n *nodeState) {
	for u := range n.users {
		if s := b.pres.users[u]; s != nil {
			delete(s, node)
			if len(s) == 0 {
				delete(b.pres.users, u)
			}
		}
	}
	for k := range n.topics {
		if s := b.pres.topic[k.topic]; s != nil {
			delete(s, topicMember{k.user, node})
			if len(s) == 0 {
				delete(b.pres.topic, k.topic)
			}
		}
	}
	delete(b.pres.nodes, node)
}

// lockPresence takes pmu, unless the broker is closed.
func (b *Broker) lockPresence(ctx context.Context) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return broker.ErrClosed
	}
	b.pmu.Lock()
	return nil
}

// Announce makes info.Name live for ttl. resync is true when the node was not
// live: its registrations, if it had any, are gone.
func (b *Broker) Announce(ctx context.Context, info broker.NodeInfo, ttl time.Duration) (bool, error) {
	if err := broker.CheckAnnounce(info, ttl); err != nil {
		return false, err
	}
	if err := b.lockPresence(ctx); err != nil {
		return false, err
	}
	defer b.pmu.Unlock()
	now := b.now()
	for name := range b.pres.nodes {
		b.liveLocked(name, now) // sweeps every lapsed node
	}
	info.AnnouncedAt = now
	n := b.pres.nodes[info.Name]
	resync := n == nil
	if resync {
		n = &nodeState{users: make(map[string]struct{}), topics: make(map[topicKey]struct{})}
		b.pres.nodes[info.Name] = n
	}
	n.info, n.expires = info, now.Add(ttl)
	return resync, nil
}

// Leave ends node's announcement and drops its registrations.
func (b *Broker) Leave(ctx context.Context, node string) error {
	if err := b.lockPresence(ctx); err != nil {
		return err
	}
	defer b.pmu.Unlock()
	if n := b.pres.nodes[node]; n != nil {
		b.dropLocked(node, n)
	}
	return nil
}

// Nodes returns the live nodes' announcements.
func (b *Broker) Nodes(ctx context.Context) ([]broker.NodeInfo, error) {
	if err := b.lockPresence(ctx); err != nil {
		return nil, err
	}
	defer b.pmu.Unlock()
	now := b.now()
	var out []broker.NodeInfo
	for name := range b.pres.nodes {
		if n := b.liveLocked(name, now); n != nil {
			out = append(out, n.info)
		}
	}
	slices.SortFunc(out, func(a, b broker.NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// UpdatePresence applies changes of node in order, all or nothing.
func (b *Broker) UpdatePresence(ctx context.Context, node string, changes []broker.Change) error {
	for _, c := range changes {
		if err := c.Validate(); err != nil {
			return err
		}
	}
	if err := b.lockPresence(ctx); err != nil {
		return err
	}
	defer b.pmu.Unlock()
	n := b.liveLocked(node, b.now())
	if n == nil {
		return broker.ErrLapsed
	}
	for _, c := range changes {
		switch c.Kind {
		case broker.UserAdded:
			n.users[c.User] = struct{}{}
			s := b.pres.users[c.User]
			if s == nil {
				s = make(map[string]struct{})
				b.pres.users[c.User] = s
			}
			s[node] = struct{}{}
		case broker.UserRemoved:
			delete(n.users, c.User)
			if s := b.pres.users[c.User]; s != nil {
				delete(s, node)
				if len(s) == 0 {
					delete(b.pres.users, c.User)
				}
			}
		case broker.TopicJoined:
			n.topics[topicKey{c.Topic, c.User}] = struct{}{}
			s := b.pres.topic[c.Topic]
			if s == nil {
				s = make(map[topicMember]struct{})
				b.pres.topic[c.Topic] = s
			}
			s[topicMember{c.User, node}] = struct{}{}
		case broker.TopicLeft:
			delete(n.topics, topicKey{c.Topic, c.User})
			if s := b.pres.topic[c.Topic]; s != nil {
				delete(s, topicMember{c.User, node})
				if len(s) == 0 {
					delete(b.pres.topic, c.Topic)
				}
			}
		}
	}
	return nil
}

// AddUser registers user on node.
func (b *Broker) AddUser(ctx context.Context, node, user string) error {
	return b.UpdatePresence(ctx, node, []broker.Change{{Kind: broker.UserAdded, User: user}})
}

// RemoveUser undoes AddUser.
func (b *Broker) RemoveUser(ctx context.Context, node, user string) error {
	return b.UpdatePresence(ctx, node, []broker.Change{{Kind: broker.UserRemoved, User: user}})
}

// JoinTopic makes user present in topic on node.
func (b *Broker) JoinTopic(ctx context.Context, node, topic, user string) error {
	return b.UpdatePresence(ctx, node, []broker.Change{{Kind: broker.TopicJoined, User: user, Topic: topic}})
}

// LeaveTopic undoes JoinTopic.
func (b *Broker) LeaveTopic(ctx context.Context, node, topic, user string) error {
	return b.UpdatePresence(ctx, node, []broker.Change{{Kind: broker.TopicLeft, User: user, Topic: topic}})
}

// UserNodes returns the live nodes holding user.
func (b *Broker) UserNodes(ctx context.Context, user string) ([]string, error) {
	if err := b.lockPresence(ctx); err != nil {
		return nil, err
	}
	defer b.pmu.Unlock()
	now := b.now()
	var out []string
	for node := range b.pres.users[user] {
		if b.liveLocked(node, now) != nil {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out, nil
}

// TopicUsers returns who is present in topic on live nodes.
func (b *Broker) TopicUsers(ctx context.Context, topic string) ([]broker.PresenceEntry, error) {
	if topic == "" {
		return nil, broker.ErrBadTopic
	}
	if err := b.lockPresence(ctx); err != nil {
		return nil, err
	}
	defer b.pmu.Unlock()
	now := b.now()
	var out []broker.PresenceEntry
	for m := range b.pres.topic[topic] {
		if b.liveLocked(m.node, now) != nil {
			out = append(out, broker.PresenceEntry{User: m.user, Node: m.node})
		}
	}
	slices.SortFunc(out, broker.ComparePresence)
	return out, nil
}
