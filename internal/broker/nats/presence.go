package nats

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldgg/herald/internal/broker"
)

var _ broker.Presence = (*Broker)(nil)

// announcement is what this broker knows of a node it announced.
type announcement struct {
	inc string
	// seq is the stream sequence of the node's live record as last written;
	// a refresh expects it to be still the last, which fails once JetStream
	// dropped the record for its TTL or lost it.
	seq uint64
	// deadline is when the record expires at the earliest, by this
	// process's clock: the refresh was sent before JetStream stored it.
	// Past it, updates fail with ErrLapsed rather than write registrations
	// the reapers may already consider dead.
	deadline time.Time
	// lapsed is set when an update failed with ErrLapsed: its caller dropped
	// the changes, so the next Announce must claim anew and report resync
	// even if the live record is still there.
	lapsed bool
}

// liveRecord is the value of live.<node>.
type liveRecord struct {
	Inc  string          `json:"inc"`
	Info broker.NodeInfo `json:"info"`
}

// Announce refreshes the node's live record on condition that it is still the
// one this broker wrote; when it is not (expired, lost with the server's
// store, superseded) or there is none, it claims a new announcement (resync).
func (b *Broker) Announce(ctx context.Context, info broker.NodeInfo, ttl time.Duration) (bool, error) {
	if err := broker.CheckAnnounce(info, ttl); err != nil {
		return false, err
	}
	if err := b.ready(); err != nil {
		return false, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	// JetStream keeps whole seconds, at least one; round up so the record
	// never expires before the caller's ttl.
	recTTL := max(ttl.Truncate(time.Second), time.Second)
	if recTTL < ttl {
		recTTL += time.Second
	}
	subj := b.nodesBk.prefix + "live." + token(info.Name)

	b.annMu.Lock()
	defer b.annMu.Unlock()
	b.presMu.Lock()
	cur, ok := b.anns[info.Name]
	b.presMu.Unlock()
	if ok && !cur.lapsed {
		sent := time.Now()
		seq, err := b.putLive(ctx, subj, cur.inc, info, sent, recTTL, jetstream.WithExpectLastSequencePerSubject(cur.seq))
		if err == nil && b.refreshed(info.Name, announcement{inc: cur.inc, seq: seq, deadline: sent.Add(ttl)}) {
			b.kickReaper()
			return false, nil
		}
		var apiErr *jetstream.APIError
		lapsed := err == nil || errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
		if !lapsed && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return false, b.fail("announce", info.Name, err)
		}
	}
	inc := fmt.Sprintf("%016x", rand.Uint64())
	sent := time.Now()
	seq, err := b.putLive(ctx, subj, inc, info, sent, recTTL)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		if err = b.ensureBuckets(ctx); err == nil {
			seq, err = b.putLive(ctx, subj, inc, info, sent, recTTL)
		}
	}
	if err == nil {
		// Written after live.<n>, so a reaper that sees it also sees the
		// live record naming it (or a later one that supersedes it).
		_, err = b.js.PublishMsg(ctx, &natsgo.Msg{Subject: b.nodesBk.prefix + "inc." + token(info.Name) + "." + inc})
	}
	if err != nil {
		return false, b.fail("announce", info.Name, err)
	}
	b.setAnnouncement(info.Name, announcement{inc: inc, seq: seq, deadline: sent.Add(ttl)})
	b.kickReaper()
	return true, nil
}

func (b *Broker) putLive(ctx context.Context, subj, inc string, info broker.NodeInfo, sent time.Time, ttl time.Duration, opts ...jetstream.PublishOpt) (uint64, error) {
	info.AnnouncedAt = sent
	data, err := json.Marshal(liveRecord{Inc: inc, Info: info})
	if err != nil {
		return 0, err
	}
	ack, err := b.js.PublishMsg(ctx, &natsgo.Msg{Subject: subj, Data: data}, append(opts, jetstream.WithMsgTTL(ttl))...)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func (b *Broker) setAnnouncement(node string, a announcement) {
	b.presMu.Lock()
	b.anns[node] = a
	b.presMu.Unlock()
}

// refreshed records a refresh of node's announcement, unless an update
// refused since then found it lapsed: the caller must claim anew instead.
func (b *Broker) refreshed(node string, a announcement) bool {
	b.presMu.Lock()
	defer b.presMu.Unlock()
	if cur := b.anns[node]; cur.inc != a.inc || cur.lapsed {
		return false
	}
	b.anns[node] = a
	return true
}

// current returns node's announcement if it has not run out, and marks it
// lapsed otherwise: the caller drops the changes it is refused.
func (b *Broker) current(node string) (announcement, bool) {
	b.presMu.Lock()
	defer b.presMu.Unlock()
	a, ok := b.anns[node]
	if !ok || a.lapsed {
		return a, false
	}
	if !time.Now().Before(a.deadline) {
		a.lapsed = true
		b.anns[node] = a
		return a, false
	}
	return a, true
}

// Leave drops the node's live record (if it is still this broker's), then
// purges its registrations and the record of its announcement.
func (b *Broker) Leave(ctx context.Context, node string) error {
	if err := b.ready(); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	b.annMu.Lock()
	defer b.annMu.Unlock()
	b.presMu.Lock()
	a, ok := b.anns[node]
	delete(b.anns, node)
	b.presMu.Unlock()
	if !ok {
		return nil
	}
	_, err := b.js.PublishMsg(ctx, purgeMarker(b.nodesBk.prefix+"live."+token(node)),
		jetstream.WithExpectLastSequencePerSubject(a.seq))
	var apiErr *jetstream.APIError
	if err != nil && !errors.As(err, &apiErr) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
		// An API error means the record is no longer this broker's; no
		// stream, that the server lost it.
		return b.fail("leave", node, err)
	}
	if err := b.reapAnnouncement(ctx, token(node), a.inc); err != nil {
		b.log.Info("nats: leave: registrations left for other nodes to remove", "err", err)
	}
	return nil
}

// purgeMarker is a message that removes every earlier one of its subject and
// disappears itself a second later.
func purgeMarker(subj string) *natsgo.Msg {
	m := natsgo.NewMsg(subj)
	m.Header.Set(hdrKVOperation, "PURGE")
	m.Header.Set(hdrRollup, "sub")
	m.Header.Set(hdrTTL, markerTTL)
	return m
}

// liveNodes reads every live record: node → its current announcement.
func (b *Broker) liveNodes(ctx context.Context) (map[string]liveRecord, error) {
	entries, _, err := b.scan(ctx, b.nodesBk, "live.>")
	if err != nil {
		return nil, err
	}
	live := make(map[string]liveRecord, len(entries))
	for _, e := range entries {
		node, ok := untoken(strings.TrimPrefix(e.key, "live."))
		var rec liveRecord
		if !ok || json.Unmarshal(e.data, &rec) != nil {
			continue
		}
		live[node] = rec
	}
	return live, nil
}

// Nodes returns every live record's announcement.
func (b *Broker) Nodes(ctx context.Context) ([]broker.NodeInfo, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	live, err := b.liveNodes(ctx)
	if err != nil {
		return nil, b.fail("nodes", "", noStreamEmpty(err))
	}
	out := make([]broker.NodeInfo, 0, len(live))
	for _, rec := range live {
		out = append(out, rec.Info)
	}
	slices.SortFunc(out, func(a, b broker.NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// noStreamEmpty is nil for errNoStream: no bucket means no entries.
func noStreamEmpty(err error) error {
	if errors.Is(err, errNoStream) {
		return nil
	}
	return err
}

// UpdatePresence publishes one message per change — an empty value to add,
// a purge marker to remove — pipelined in one round trip per pipelineChunk.
func (b *Broker) UpdatePresence(ctx context.Context, node string, changes []broker.Change) error {
	for _, c := range changes {
		if err := c.Validate(); err != nil {
			return err
		}
		if len(c.User) > maxTopicLen || len(c.Topic) > maxTopicLen {
			return fmt.Errorf("nats: presence change with a name over %d bytes: %w", maxTopicLen, broker.ErrBadTopic)
		}
	}
	if err := b.ready(); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	a, ok := b.current(node)
	if !ok {
		return fmt.Errorf("nats: update presence of %q: %w", node, broker.ErrLapsed)
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	tail := "." + token(node) + "." + a.inc
	msgs := make([]*natsgo.Msg, len(changes))
	for i, c := range changes {
		switch c.Kind {
		case broker.UserAdded:
			msgs[i] = &natsgo.Msg{Subject: b.usersBk.prefix + token(c.User) + tail}
		case broker.UserRemoved:
			msgs[i] = purgeMarker(b.usersBk.prefix + token(c.User) + tail)
		case broker.TopicJoined:
			msgs[i] = &natsgo.Msg{Subject: b.topicsBk.prefix + token(c.Topic) + "." + token(c.User) + tail}
		case broker.TopicLeft:
			msgs[i] = purgeMarker(b.topicsBk.prefix + token(c.Topic) + "." + token(c.User) + tail)
		}
	}
	replies, err := b.pipeline(ctx, msgs)
	for i := 0; err == nil && i < len(replies); i++ {
		err = checkAck(replies[i])
	}
	if errors.Is(err, errNoStream) {
		// The buckets are gone and this node's registrations with them;
		// Announce recreates them and reports resync.
		b.presMu.Lock()
		if cur := b.anns[node]; cur.inc == a.inc {
			cur.lapsed = true
			b.anns[node] = cur
		}
		b.presMu.Unlock()
		return fmt.Errorf("nats: update presence of %q: %w", node, broker.ErrLapsed)
	}
	if err != nil {
		return b.fail("update presence", node, err)
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

// scanLive reads bk's keys matching filter and the live records at once: two
// direct gets in flight together, one round trip.
func (b *Broker) scanLive(ctx context.Context, bk bucket, filter string) ([]entry, map[string]liveRecord, error) {
	var (
		wg      sync.WaitGroup
		entries []entry
		scanErr error
	)
	wg.Go(func() { entries, _, scanErr = b.scan(ctx, bk, filter) })
	live, err := b.liveNodes(ctx)
	wg.Wait()
	if err == nil {
		err = scanErr
	}
	return entries, live, noStreamEmpty(err)
}

// UserNodes returns the nodes whose live record names the announcement of one
// of the user's registrations. Registrations of dead announcements are left
// to the reapers, which purge them by announcement.
func (b *Broker) UserNodes(ctx context.Context, user string) ([]string, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	entries, live, err := b.scanLive(ctx, b.usersBk, token(user)+".>")
	if err != nil {
		return nil, b.fail("user nodes", user, err)
	}
	var nodes []string
	for _, e := range entries {
		parts := strings.Split(e.key, ".")
		if len(parts) != 3 {
			continue
		}
		if node, ok := untoken(parts[1]); ok && live[node].Inc == parts[2] {
			nodes = append(nodes, node)
		}
	}
	slices.Sort(nodes)
	return slices.Compact(nodes), nil
}

// TopicUsers returns the topic's registrations whose announcement is live.
func (b *Broker) TopicUsers(ctx context.Context, topic string) ([]broker.PresenceEntry, error) {
	if err := b.usable(topic); err != nil {
		return nil, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	entries, live, err := b.scanLive(ctx, b.topicsBk, token(topic)+".>")
	if err != nil {
		return nil, b.fail("topic users", topic, err)
	}
	var out []broker.PresenceEntry
	for _, e := range entries {
		parts := strings.Split(e.key, ".")
		if len(parts) != 4 {
			continue
		}
		user, ok1 := untoken(parts[1])
		node, ok2 := untoken(parts[2])
		if ok1 && ok2 && live[node].Inc == parts[3] {
			out = append(out, broker.PresenceEntry{User: user, Node: node})
		}
	}
	slices.SortFunc(out, broker.ComparePresence)
	return slices.Compact(out), nil
}

func (b *Broker) kickReaper() {
	select {
	case b.reapKick <- struct{}{}:
	default:
	}
}

// reapLoop purges the registrations of dead announcements whenever an
// announcement wakes it.
func (b *Broker) reapLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.reapKick:
		}
		if err := b.reap(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("nats: removing dead nodes' registrations failed; retrying on the next announcement", "err", err)
		}
	}
}

// reap reads the nodes bucket in one isolated batch, so every inc record it
// sees comes with the live record current at that instant, and purges each
// announcement whose node's live record names another (or none).
func (b *Broker) reap(ctx context.Context) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	entries, complete, err := b.scan(ctx, b.nodesBk, ">")
	if err != nil || !complete {
		return noStreamEmpty(err)
	}
	live := make(map[string]string)
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.key, "live."); ok {
			var rec liveRecord
			if json.Unmarshal(e.data, &rec) == nil {
				live[rest] = rec.Inc
			}
		}
	}
	for _, e := range entries {
		parts := strings.Split(e.key, ".")
		if len(parts) != 3 || parts[0] != "inc" || live[parts[1]] == parts[2] {
			continue
		}
		if err := b.reapAnnouncement(ctx, parts[1], parts[2]); err != nil {
			return err
		}
	}
	return nil
}

// reapAnnouncement purges the registrations of node (a token) made under inc,
// then the record that they may exist.
func (b *Broker) reapAnnouncement(ctx context.Context, node, inc string) error {
	tail := "." + node + "." + inc
	if err := b.purge(ctx, b.usersBk, b.usersBk.prefix+"*"+tail); err != nil {
		return err
	}
	if err := b.purge(ctx, b.topicsBk, b.topicsBk.prefix+"*.*"+tail); err != nil {
		return err
	}
	return b.purge(ctx, b.nodesBk, b.nodesBk.prefix+"inc"+tail)
}
