package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldgg/herald/internal/broker"
)

var _ broker.Presence = (*Broker)(nil)

const (
	// incLen is the length of the incarnation part that starts every id.
	incLen = 16
	// updateChunk is how many changes one update script applies: enough to
	// make a flush a few commands, few enough not to stall Redis for long.
	updateChunk = 256
	// reapBatch is how many registrations of a dead id one reaping step
	// removes, for users and for topics each.
	reapBatch = 512
	// reapRounds bounds one reaping pass, so a pass always ends.
	reapRounds = 64
)

// presenceScripts are the presence Lua scripts; see presence_scripts.go.
type presenceScripts struct {
	announce, leave, update, userNodes, topicUsers, nodes, dead, forget *script
}

func newPresenceScripts() presenceScripts {
	return presenceScripts{
		announce:   newScript(announceLua),
		leave:      newScript(leaveLua),
		update:     newScript(updateLua),
		userNodes:  newScript(userNodesLua),
		topicUsers: newScript(topicUsersLua),
		nodes:      newScript(nodesLua),
		dead:       newScript(deadLua),
		forget:     newScript(forgetLua),
	}
}

func (b *Broker) clusterKey(name string) string { return b.cfg.Prefix + ":{cluster}:" + name }
func (b *Broker) userKey(user string) string    { return b.cfg.Prefix + ":u:{" + user + "}" }
func (b *Broker) presKey(topic string) string   { return b.cfg.Prefix + ":{" + topic + "}:p" }
func (b *Broker) idUsersKey(id string) string   { return b.cfg.Prefix + ":n:{" + id + "}:u" }
func (b *Broker) idTopicsKey(id string) string  { return b.cfg.Prefix + ":n:{" + id + "}:t" }

// nodeOf is the node name in an id.
func nodeOf(id string) string {
	if len(id) < incLen {
		return ""
	}
	return id[incLen:]
}

// Announce refreshes the node's id, or claims a new one when this broker has
// none for it or the old one is dead (resync). A claim kills the id it
// replaces, so the registrations of a crashed process whose name is taken
// over stop counting at once.
func (b *Broker) Announce(ctx context.Context, info broker.NodeInfo, ttl time.Duration) (bool, error) {
	if err := broker.CheckAnnounce(info, ttl); err != nil {
		return false, err
	}
	if err := b.ready(); err != nil {
		return false, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	info.AnnouncedAt = time.Now()
	data, err := json.Marshal(info)
	if err != nil {
		return false, fmt.Errorf("redis: announce: %w", err)
	}
	ttlArg := strconv.FormatInt(ttl.Milliseconds(), 10)
	keys := []string{b.aliveKey, b.clusterKey("info"), b.clusterKey("cur")}

	b.annMu.Lock()
	defer b.annMu.Unlock()
	b.presMu.Lock()
	id := b.ids[info.Name]
	b.presMu.Unlock()
	if id != "" {
		ok, err := b.pres.announce.runRetryable(ctx, b.client, keys, []string{id, info.Name, ttlArg, string(data), "0"}).AsBool()
		if err != nil {
			return false, b.fail("announce", info.Name, err)
		}
		if ok {
			b.kickReaper()
			return false, nil
		}
	}
	id = fmt.Sprintf("%016x%s", rand.Uint64(), info.Name)
	if err := b.pres.announce.runRetryable(ctx, b.client, keys, []string{id, info.Name, ttlArg, string(data), "1"}).Error(); err != nil {
		return false, b.fail("announce", info.Name, err)
	}
	b.presMu.Lock()
	b.ids[info.Name] = id
	b.presMu.Unlock()
	b.kickReaper()
	return true, nil
}

// Leave kills the node's id, then removes its registrations until done or ctx
// ends; the reapers of other nodes finish what is left.
func (b *Broker) Leave(ctx context.Context, node string) error {
	if err := b.ready(); err != nil {
		return err
	}
	b.annMu.Lock()
	defer b.annMu.Unlock()
	b.presMu.Lock()
	id := b.ids[node]
	delete(b.ids, node)
	b.presMu.Unlock()
	if id == "" {
		return nil
	}
	rctx, cancel := b.bound(ctx)
	err := b.pres.leave.runRetryable(rctx, b.client, []string{b.aliveKey, b.clusterKey("cur")}, []string{id, node}).Error()
	cancel()
	if err != nil {
		return b.fail("leave", node, err)
	}
	if err := b.reapID(ctx, id); err != nil {
		b.log.Info("redis: leave: registrations left for other nodes to remove", "err", err)
	}
	return nil
}

// Nodes returns the live ids' announcements.
func (b *Broker) Nodes(ctx context.Context) ([]broker.NodeInfo, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	vals, err := b.pres.nodes.runRetryable(ctx, b.client, []string{b.aliveKey, b.clusterKey("info")}, nil).ToArray()
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("nodes script returned %d values", len(vals))
	}
	if err != nil {
		return nil, b.fail("nodes", "", err)
	}
	infos, err := vals[1].ToArray()
	if err != nil {
		return nil, b.fail("nodes", "", err)
	}
	byName := make(map[string]broker.NodeInfo, len(infos))
	for _, v := range infos {
		s, err := v.ToString()
		if err != nil {
			continue // forgotten since the id was read
		}
		var info broker.NodeInfo
		if err := json.Unmarshal([]byte(s), &info); err != nil {
			b.log.Warn("redis: skipping a malformed node announcement", "err", err)
			continue
		}
		// Two live ids of one name only while two processes fight over it.
		if old, ok := byName[info.Name]; !ok || info.AnnouncedAt.After(old.AnnouncedAt) {
			byName[info.Name] = info
		}
	}
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b broker.NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// UpdatePresence runs the update script once per updateChunk changes, all
// chunks pipelined in one round trip and applied in order.
func (b *Broker) UpdatePresence(ctx context.Context, node string, changes []broker.Change) error {
	for _, c := range changes {
		if err := c.Validate(); err != nil {
			return err
		}
	}
	if err := b.ready(); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	b.presMu.Lock()
	id := b.ids[node]
	b.presMu.Unlock()
	if id == "" {
		return fmt.Errorf("redis: update presence of %q: %w", node, broker.ErrLapsed)
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	type call struct{ keys, args []string }
	calls := make([]call, 0, (len(changes)+updateChunk-1)/updateChunk)
	for chunk := range slices.Chunk(changes, updateChunk) {
		keys := make([]string, 3, 3+len(chunk))
		keys[0], keys[1], keys[2] = b.aliveKey, b.idUsersKey(id), b.idTopicsKey(id)
		args := make([]string, 1, 1+3*len(chunk))
		args[0] = id
		for _, c := range chunk {
			switch c.Kind {
			case broker.UserAdded:
				keys, args = append(keys, b.userKey(c.User)), append(args, "a", c.User, "")
			case broker.UserRemoved:
				keys, args = append(keys, b.userKey(c.User)), append(args, "r", c.User, "")
			case broker.TopicJoined:
				keys, args = append(keys, b.presKey(c.Topic)), append(args, "j", c.User, c.Topic)
			case broker.TopicLeft:
				keys, args = append(keys, b.presKey(c.Topic)), append(args, "l", c.User, c.Topic)
			}
		}
		calls = append(calls, call{keys, args})
	}
	// Retryable: rueidis sends the whole pipeline again, in order, on a new
	// connection when the first was dead (every pooled one is, once, after a
	// Redis restart), and every change is idempotent.
	cmds := make(rueidis.Commands, len(calls))
	for i, c := range calls {
		cmds[i] = b.pres.update.evalsha(b.client, c.keys, c.args).ToRetryable()
	}
	resps := b.client.DoMulti(ctx, cmds...)
	for i, resp := range resps {
		if !noScript(resp.Error()) {
			continue
		}
		// Redis lost its scripts (a restart). Run this chunk and every later
		// one again, in order, so a later chunk that did run cannot end up
		// applied before an earlier one; each change is idempotent.
		cmds = cmds[:0]
		for _, c := range calls[i:] {
			cmds = append(cmds, b.pres.update.eval(b.client, c.keys, c.args).ToRetryable())
		}
		copy(resps[i:], b.client.DoMulti(ctx, cmds...))
		break
	}
	for _, resp := range resps {
		err := resp.Error()
		if err == nil {
			continue
		}
		if rerr, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(rerr.Error(), "HERALDLAPSED") {
			b.presMu.Lock()
			if b.ids[node] == id {
				// The id is dead for good: the next Announce claims a new one.
				delete(b.ids, node)
			}
			b.presMu.Unlock()
			return fmt.Errorf("redis: update presence of %q: %w", node, broker.ErrLapsed)
		}
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

// UserNodes returns the live nodes holding user: one script, which also drops
// the user's entries of dead ids.
func (b *Broker) UserNodes(ctx context.Context, user string) ([]string, error) {
	if err := b.ready(); err != nil {
		return nil, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	ids, err := b.pres.userNodes.runRetryable(ctx, b.client, []string{b.aliveKey, b.userKey(user)}, nil).AsStrSlice()
	if err != nil {
		return nil, b.fail("user nodes", user, err)
	}
	nodes := make([]string, 0, len(ids))
	for _, id := range ids {
		if n := nodeOf(id); n != "" {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	return slices.Compact(nodes), nil
}

// TopicUsers returns who is present in topic on live nodes: one script, which
// also drops the topic's entries of dead ids.
func (b *Broker) TopicUsers(ctx context.Context, topic string) ([]broker.PresenceEntry, error) {
	if err := b.usable(topic); err != nil {
		return nil, err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	members, err := b.pres.topicUsers.runRetryable(ctx, b.client, []string{b.aliveKey, b.presKey(topic)}, nil).AsStrSlice()
	if err != nil {
		return nil, b.fail("topic users", topic, err)
	}
	out := make([]broker.PresenceEntry, 0, len(members))
	for _, m := range members {
		id, user, ok := cutLen(m)
		if ok && nodeOf(id) != "" {
			out = append(out, broker.PresenceEntry{User: user, Node: nodeOf(id)})
		}
	}
	slices.SortFunc(out, broker.ComparePresence)
	return slices.Compact(out), nil
}

// cutLen splits "<len(a)>:<a><b>" into a and b.
func cutLen(m string) (a, b string, ok bool) {
	n, rest, ok := strings.Cut(m, ":")
	if !ok {
		return "", "", false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(rest) {
		return "", "", false
	}
	return rest[:l], rest[l:], true
}

func (b *Broker) kickReaper() {
	select {
	case b.reapKick <- struct{}{}:
	default:
	}
}

// reapLoop removes the registrations of dead ids whenever an announcement
// wakes it. Every live node runs one; they share the work through SPOP.
func (b *Broker) reapLoop(ctx context.Context) {
	defer b.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.reapKick:
		}
		if err := b.reap(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("redis: removing dead nodes' registrations failed; retrying on the next announcement", "err", err)
		}
	}
}

// reap removes the registrations of every dead id, then forgets the id.
func (b *Broker) reap(ctx context.Context) error {
	for range reapRounds {
		rctx, cancel := b.bound(ctx)
		ids, err := b.pres.dead.runRetryable(rctx, b.client, []string{b.aliveKey}, []string{"16"}).AsStrSlice()
		cancel()
		if err != nil || len(ids) == 0 {
			return err
		}
		for _, id := range ids {
			if err := b.reapID(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// reapID removes a dead id's registrations in steps of reapBatch and forgets
// the id once none is left. SPOP hands each registration to one reaper only,
// so several nodes reaping one id split the work. A reaper stopped between
// SPOP and SREM leaves entries that the next read of that user or topic drops.
func (b *Broker) reapID(ctx context.Context, id string) error {
	usersKey, topicsKey := b.idUsersKey(id), b.idTopicsKey(id)
	idm := strconv.Itoa(len(id)) + ":" + id
	for {
		rctx, cancel := b.bound(ctx)
		resps := b.client.DoMulti(rctx,
			b.client.B().Spop().Key(usersKey).Count(reapBatch).Build(),
			b.client.B().Spop().Key(topicsKey).Count(reapBatch).Build())
		cancel()
		users, err := resps[0].AsStrSlice()
		if err != nil {
			return err
		}
		topics, err := resps[1].AsStrSlice()
		if err != nil {
			return err
		}
		if len(users) == 0 && len(topics) == 0 {
			break
		}
		cmds := make(rueidis.Commands, 0, len(users)+len(topics))
		for _, u := range users {
			cmds = append(cmds, b.client.B().Srem().Key(b.userKey(u)).Member(id).Build().ToRetryable())
		}
		for _, m := range topics {
			if topic, user, ok := cutLen(m); ok {
				cmds = append(cmds, b.client.B().Srem().Key(b.presKey(topic)).Member(idm+user).Build().ToRetryable())
			}
		}
		rctx, cancel = b.bound(ctx)
		for _, resp := range b.client.DoMulti(rctx, cmds...) {
			if err == nil {
				err = resp.Error()
			}
		}
		cancel()
		if err != nil {
			return err
		}
	}
	rctx, cancel := b.bound(ctx)
	defer cancel()
	keys := []string{b.aliveKey, b.clusterKey("info"), b.clusterKey("cur"), usersKey, topicsKey}
	return b.pres.forget.runRetryable(rctx, b.client, keys, []string{id, nodeOf(id)}).Error()
}
