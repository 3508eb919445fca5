// Package broker defines how Herald nodes exchange messages: the Broker contract,
// its shared types, and the control-message format. Implementations live in
// subpackages (memory, redis, nats); every one passes brokertest.Run.
//
// # Streams
//
// Every topic is a stream. Each publication gets the next offset (1, 2, 3, …) and
// carries the topic's current epoch. The pair is a Position. An epoch names one
// unbroken history: when an implementation may have lost history (a restart without
// persistence, an evicted key), it starts a new epoch, and a client that asks to
// recover from a position in an older epoch is told recovery failed rather than
// silently missing messages.
//
// # Concurrency
//
// All methods are safe for concurrent use. The Handler is called from the
// implementation's own goroutines: for one topic, publications arrive in offset
// order and never concurrently; across topics there is no ordering. The handler
// must not block — the hub hands each message to its shards and returns.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Errors callers may check with errors.Is.
var (
	// ErrUnavailable means the backend could not be reached or did not answer in
	// time. A Publish that returns it did not happen as far as any subscriber knows.
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrBadTopic is returned for a topic name the backend cannot carry.
	ErrBadTopic = errors.New("broker: bad topic")
)

// Position is a place in a topic's stream.
type Position struct {
	Offset uint64
	Epoch  string
}

// Publication is one message of a topic.
type Publication struct {
	Topic  string
	Offset uint64
	Epoch  string
	Data   []byte
	// User is the publishing user when a client published, empty otherwise.
	User string
}

// PublishOptions tune one Publish.
type PublishOptions struct {
	// User is recorded as the publisher.
	User string
}

// HistoryRequest asks for a topic's retained publications.
type HistoryRequest struct {
	// Since, when set, asks for every publication after it. When nil, only the
	// current position is returned.
	Since *Position
	// Limit caps the publications returned; 0 means the implementation's history size.
	Limit int
}

// HistoryResult answers a HistoryRequest.
type HistoryResult struct {
	// Publications after Since, in offset order.
	Publications []Publication
	// Position is the topic's latest position (offset 0 when nothing was published
	// in this epoch yet).
	Position Position
	// Recovered reports, when Since was set, that Publications holds every message
	// after Since: same epoch, nothing evicted in between, nothing cut by Limit.
	Recovered bool
}

// Handler receives what the broker delivers to this node.
type Handler interface {
	// HandlePublication delivers a publication on a topic this node subscribed to.
	HandlePublication(pub Publication)
	// HandleControl delivers a control message sent with Broadcast or SendNode.
	HandleControl(data []byte)
}

// Broker carries topic publications and control messages between nodes.
//
// The server calls Start once before anything else and Close once at the end.
// Publish, History, Subscribe and Unsubscribe may block on the network; they honour
// ctx and report ErrUnavailable (wrapped) when the backend is unreachable.
type Broker interface {
	// Start connects and begins delivering to h. It returns once the broker is
	// ready to publish and subscribe; delivery continues until Close.
	Start(ctx context.Context, h Handler) error
	// Publish appends data to topic's stream and delivers it to every node
	// subscribed to the topic. The returned position is the publication's.
	// On success the publication is in history; on error it was not published.
	Publish(ctx context.Context, topic string, data []byte, opts PublishOptions) (Position, error)
	// History returns retained publications of topic; see HistoryRequest.
	History(ctx context.Context, topic string, req HistoryRequest) (HistoryResult, error)
	// Subscribe makes this node receive topic's publications. Called by the hub when
	// the first local session subscribes to topic; Unsubscribe when the last leaves.
	Subscribe(ctx context.Context, topic string) error
	Unsubscribe(ctx context.Context, topic string) error
	// Broadcast delivers a control message to every node, this one included.
	Broadcast(ctx context.Context, data []byte) error
	// SendNode delivers a control message to the node named node only.
	SendNode(ctx context.Context, node string, data []byte) error
	// Close stops delivery and releases connections.
	Close() error
}

// ControlKind says what a control message asks each node to do.
type ControlKind string

const (
	ControlBroadcast ControlKind = "broadcast" // deliver to every session
	ControlPush      ControlKind = "push"      // deliver to a user's or a session's connections
	ControlRegion    ControlKind = "region"    // deliver to sessions within an area of a map
	ControlKick      ControlKind = "kick"      // disconnect a user's or a session's connections
	ControlSubscribe ControlKind = "sub"       // subscribe a user's or a session's connections to Topic
	ControlUnsub     ControlKind = "unsub"     // undo ControlSubscribe
	ControlPosition  ControlKind = "pos"       // place Session at X, Y on Map, or off its map when Map is ""
)

// Control is a cluster-wide instruction carried by Broadcast or SendNode.
type Control struct {
	Kind    ControlKind `json:"k"`
	User    string      `json:"u,omitempty"`
	Session string      `json:"s,omitempty"`
	// Region: the circle of Radius around (X, Y) on Map, or, when Rect is set,
	// the rectangle [Rect[0], Rect[2]] × [Rect[1], Rect[3]] (min x, min y, max
	// x, max y; inclusive), with (X, Y) only the origin receivers see. Exclude
	// lists session ids that must not receive it. Position: Session, Map, X, Y.
	Map     string    `json:"m,omitempty"`
	X       float64   `json:"x,omitempty"`
	Y       float64   `json:"y,omitempty"`
	Radius  float64   `json:"r,omitempty"`
	Rect    []float64 `json:"rc,omitempty"`
	Exclude []string  `json:"e,omitempty"`
	// Topic of a subscribe or unsubscribe.
	Topic string `json:"t,omitempty"`
	// Reason for a kick.
	Reason string `json:"why,omitempty"`
	Data   []byte `json:"d,omitempty"`
}

// Encode returns the wire form of a control message.
func (c *Control) Encode() ([]byte, error) { return json.Marshal(c) }

// DecodeControl parses a control message.
func DecodeControl(b []byte) (Control, error) {
	var c Control
	if err := json.Unmarshal(b, &c); err != nil {
		return Control{}, fmt.Errorf("broker: bad control message: %w", err)
	}
	return c, nil
}
