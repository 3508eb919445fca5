package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLapsed is returned by presence updates for a node whose announcement is
// not live in the shared store: it was never announced through this broker,
// it left, its TTL ran out, or the store lost it (a restart without
// persistence). Nothing of the call was applied. The node calls Announce —
// the next successful one for that node always reports resync — and
// re-sends its whole local state.
var ErrLapsed = errors.New("broker: node announcement lapsed")

// NodeInfo is what a node announces about itself.
type NodeInfo struct {
	// Name identifies the node in the cluster; it is the name SendNode takes.
	// Two running processes must never share one.
	Name string `json:"name"`
	// ClientAddr is where players connect to this node (host:port or URL).
	ClientAddr string `json:"client_addr,omitempty"`
	// Version is the Herald version the node runs.
	Version string `json:"version,omitempty"`
	// Connections counts open client connections.
	Connections int `json:"connections"`
	// Sessions counts sessions, including detached ones waiting to be resumed.
	Sessions int `json:"sessions"`
	// Users counts distinct users with a session on the node.
	Users int `json:"users"`
	// StartedAt is when the node started.
	StartedAt time.Time `json:"started_at"`
	// AnnouncedAt is when the node sent this announcement, by its own clock.
	// The broker sets it; what a caller puts here is overwritten.
	AnnouncedAt time.Time `json:"announced_at"`
	// Meta carries anything else worth showing next to the node.
	Meta map[string]string `json:"meta,omitempty"`
}

// ChangeKind says what a Change does.
type ChangeKind uint8

const (
	UserAdded   ChangeKind = iota + 1 // the node now holds User
	UserRemoved                       // the node no longer holds User
	TopicJoined                       // User is present in Topic on the node
	TopicLeft                         // User is no longer present in Topic on the node
)

// Change is one presence update of a node.
type Change struct {
	Kind ChangeKind
	User string
	// Topic of a TopicJoined or TopicLeft change.
	Topic string
}

// PresenceEntry is one user present in a topic, on one node.
type PresenceEntry struct {
	User string `json:"user"`
	Node string `json:"node"`
}

// Presence is the cluster's shared state: which nodes are alive, which nodes
// hold which user, and which users are present in which topic. Every Broker
// implementation implements it too, on the same backend (memory: this
// process; redis: keys under the broker's prefix; nats: JetStream key/value
// buckets).
//
// # Model
//
// A node makes itself live with Announce and keeps itself live by calling it
// again before ttl runs out; Leave ends it at once. Registrations (users,
// topic presence) belong to one announcement of one node: reads return only
// those whose node is live, and those of a node that died without Leave are
// filtered out from the moment its TTL runs out and removed by the live
// nodes in the background. Nothing is refreshed per user, so a node holding
// a million users costs one heartbeat per interval.
//
// Registrations are reference-free sets: the node keeps its own counts (a
// user with three connections, a user subscribed twice) and tells the broker
// only about the first add and the last remove. Adding what is there or
// removing what is not is a no-op, so a failed batch may be retried whole.
//
// # Who calls what
//
// Each node runs one presence goroutine that owns every call for its node:
//
//  1. After Start and before taking connections: Announce. It reports resync
//     (true on the first call), and with an empty local state there is
//     nothing to send.
//  2. Every interval (at most ttl/3, so two missed beats are survivable):
//     Announce with fresh counts. When it reports resync the shared store
//     lost this node's registrations or never had them (the store
//     restarted, or the node missed its TTL and was taken for dead): the
//     goroutine drops its queued changes, takes a snapshot of its local
//     users and topic memberships and sends it with UpdatePresence as
//     UserAdded and TopicJoined changes, in batches of ~10,000 (one call
//     holds its whole batch in memory), then carries on with changes made
//     after the snapshot. A batch failing with ErrLapsed restarts step 2.
//  3. Every ~100 ms: one UpdatePresence with the changes queued since the
//     last flush (coalesced per user and topic). On ErrLapsed it drops them
//     and goes to step 2 at once; on another error it keeps them for the
//     next flush.
//  4. On graceful stop, after the last flush: Leave.
//
// Readers (pushes to a user, the admin API) call UserNodes, TopicUsers and
// Nodes from any goroutine.
//
// # Concurrency and errors
//
// All methods are safe for concurrent use, may block on the network, honour
// ctx, and report ErrUnavailable (wrapped) when the backend is unreachable
// and ErrClosed after Close. Start must have been called. Reads may be
// stale by one round trip; a node's registrations apply in the order it
// sent them.
type Presence interface {
	// Announce makes info.Name live for ttl, or keeps it live, and records
	// info for Nodes. resync reports that the shared store holds none of
	// this node's registrations — the first announcement through this
	// broker, or one after the node's previous announcement lapsed or was
	// lost — so the node must send its full state. A process taking over
	// the name of a node that has not left supersedes it: the old process's
	// registrations stop counting at once.
	Announce(ctx context.Context, info NodeInfo, ttl time.Duration) (resync bool, err error)
	// Leave ends node's announcement at once and removes its registrations
	// (what is left after ctx ends is removed by other nodes later).
	Leave(ctx context.Context, node string) error
	// Nodes returns every live node's latest announcement, sorted by name.
	Nodes(ctx context.Context) ([]NodeInfo, error)

	// UpdatePresence applies changes of node, in order. It fails with
	// ErrLapsed, applying nothing, when node is not live. Otherwise a
	// failed call may have applied any part of changes.
	UpdatePresence(ctx context.Context, node string, changes []Change) error
	// AddUser, RemoveUser, JoinTopic and LeaveTopic are UpdatePresence with
	// one change.
	AddUser(ctx context.Context, node, user string) error
	RemoveUser(ctx context.Context, node, user string) error
	JoinTopic(ctx context.Context, node, topic, user string) error
	LeaveTopic(ctx context.Context, node, topic, user string) error

	// UserNodes returns the live nodes holding user, sorted, without repeats.
	UserNodes(ctx context.Context, user string) ([]string, error)
	// TopicUsers returns who is present in topic on live nodes, sorted by
	// user then node.
	TopicUsers(ctx context.Context, topic string) ([]PresenceEntry, error)
}

// Validate reports whether c can be applied: a known kind, a user, and a
// topic for the topic kinds (ErrBadTopic when missing).
func (c Change) Validate() error {
	switch c.Kind {
	case UserAdded, UserRemoved:
	case TopicJoined, TopicLeft:
		if c.Topic == "" {
			return ErrBadTopic
		}
	default:
		return fmt.Errorf("broker: unknown change kind %d", c.Kind)
	}
	if c.User == "" {
		return errors.New("broker: change without a user")
	}
	return nil
}

// CheckAnnounce reports whether an announcement can be made: a node name and
// a TTL of at least a millisecond, the finest any backend keeps.
func CheckAnnounce(info NodeInfo, ttl time.Duration) error {
	if info.Name == "" {
		return errors.New("broker: announce without a node name")
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("broker: announce ttl %v is below 1ms", ttl)
	}
	return nil
}

// ComparePresence orders entries by user, then node, as TopicUsers returns them.
func ComparePresence(a, b PresenceEntry) int {
	if c := cmp.Compare(a.User, b.User); c != 0 {
		return c
	}
	return cmp.Compare(a.Node, b.Node)
}
