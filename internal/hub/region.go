package hub

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/heraldgg/herald/internal/hub/aoi"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// worldMap is one map: its spatial index and the worker goroutine that owns it.
// The worker turns moves into interest events and region broadcasts into
// recipients, and hands each (recipient, shared frame) to the recipient's
// shard, which owns the queue. See the package doc for why a map has a worker
// of its own rather than living in the shards.
type worldMap struct {
	// Immutable after newMaps.
	hub  *Hub
	name string
	cfg  MapConfig

	// The inbox: producers append under mu; the worker swaps the slice out
	// whole, so one lock round trip moves a whole batch.
	mu    sync.Mutex
	inbox []mapItem
	roomy *sync.Cond // on mu: producers that may wait do so here while the inbox is full
	wake  chan struct{}

	// Owned by the worker.
	grid    *aoi.Grid
	members map[uint64]*session.Session // grid id (session.Num) → session
	batch   []mapItem
	ids     []uint64
	entered []uint64
	left    []uint64
	out     []*[]*session.Session // per shard: a region broadcast's recipients there

	// Recipient lists handed to shards come back here once delivered.
	lists chan *[]*session.Session

	// Counters, read by MapStats.
	placed  atomic.Int64
	moves   atomic.Uint64
	regions atomic.Uint64
	events  atomic.Uint64
}

type mapOp uint8

const (
	opPlace  mapOp = iota // put sess at (x, y), answering ack
	opRemove              // take sess off the map
	opRegion              // deliver region.frame to the sessions in region.area
)

type mapItem struct {
	op   mapOp
	sess *session.Session
	x, y float64
	// ack is the id of the client's move being answered; 0 for a server placement.
	ack uint64
	// opRemove: answer sends sess a moved frame without a map (it left every map);
	// stay tells sess whom it stops seeing (it is still connected).
	answer, stay bool
	region       *regionReq
}

type regionReq struct {
	area    Area
	frame   *session.Frame
	exclude []uint64 // session numbers
}

func newMaps(h *Hub) map[string]*worldMap {
	maps := make(map[string]*worldMap, len(h.cfg.Maps))
	for name, cfg := range h.cfg.Maps {
		g, err := aoi.New(cfg.grid())
		if err != nil {
			// config.Validate refuses such a map; a hub built without it skips it.
			h.log.Error("hub: map left out", "map", name, "err", err)
			continue
		}
		m := &worldMap{hub: h, name: name, cfg: cfg, wake: make(chan struct{}, 1),
			grid: g, members: make(map[uint64]*session.Session), out: make([]*[]*session.Session, len(h.shards))}
		m.roomy = sync.NewCond(&m.mu)
		m.lists = make(chan *[]*session.Session, 64) // a 32,768-recipient broadcast in flight
		maps[name] = m
	}
	return maps
}

func (m *worldMap) wakeUp() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// push queues work that must not wait for room: removals, which shard workers
// queue, and placements made under a session's PlaceMu.
func (m *worldMap) push(it mapItem) {
	m.mu.Lock()
	m.inbox = append(m.inbox, it)
	m.mu.Unlock()
	m.wakeUp()
}

// waitRoom waits while the inbox is full: the back-pressure that slows clients'
// moves and region broadcasts down to what the map's worker can handle. It is
// called before taking PlaceMu, never while holding it: the worker may be
// waiting on a shard whose worker wants that lock.
func (m *worldMap) waitRoom() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.inbox) >= m.hub.cfg.InboxSize {
		select {
		case <-m.hub.stop:
			return
		default:
		}
		m.roomy.Wait()
	}
}

// deliver queues a region broadcast once there is room.
func (m *worldMap) deliver(it mapItem) {
	m.waitRoom()
	m.push(it)
}

func (m *worldMap) run() {
	for {
		select {
		case <-m.hub.stop:
			m.mu.Lock()
			m.roomy.Broadcast()
			m.mu.Unlock()
			return
		case <-m.wake:
			m.drain()
		}
	}
}

func (m *worldMap) drain() {
	for {
		m.mu.Lock()
		batch := m.inbox
		m.inbox = m.batch[:0]
		m.roomy.Broadcast()
		m.mu.Unlock()
		if len(batch) == 0 {
			m.batch = batch
			return
		}
		for i := range batch {
			m.handle(&batch[i])
			batch[i] = mapItem{}
		}
		m.batch = batch
	}
}

func (m *worldMap) handle(it *mapItem) {
	switch it.op {
	case opPlace:
		m.place(it.sess, it.x, it.y, it.ack)
		m.moves.Add(1)
	case opRemove:
		m.remove(it.sess, it.ack, it.answer, it.stay)
	case opRegion:
		m.region(it.region)
		m.regions.Add(1)
	}
}

// send hands f to s's shard. Region fan-out passes here once per recipient, so
// it must not allocate: the item is copied into the shard's ring.
func (m *worldMap) send(s *session.Session, f *session.Frame) {
	m.hub.shardOf(s).deliver(item{kind: itemSession, sess: s, frame: f})
}

// place puts s at (x, y) and tells everyone concerned: s its answer, then, on
// a map with interest, the sessions that start or stop seeing s and s the
// sessions it starts or stops seeing (one symmetric diff, see aoi), and the
// sessions that saw s before and still do its new position.
func (m *worldMap) place(s *session.Session, x, y float64, ack uint64) {
	id := s.Num
	_, here := m.members[id]
	var err error
	switch {
	case !m.cfg.Interest && here:
		err = m.grid.Move(id, x, y)
	case !m.cfg.Interest:
		err = m.grid.Insert(id, x, y)
	case here:
		m.entered, m.left, err = m.grid.MoveDiff(id, x, y, m.cfg.InterestRadius, m.entered[:0], m.left[:0])
	default:
		m.entered, err = m.grid.InsertDiff(id, x, y, m.cfg.InterestRadius, m.entered[:0])
		m.left = m.left[:0]
	}
	if err != nil {
		// Place checked the bounds against the same immutable config.
		m.hub.log.Error("hub: position refused by the map index", "map", m.name, "session", s.ID, "err", err)
		return
	}
	if !here {
		m.members[id] = s
		m.placed.Add(1)
	}
	m.send(s, m.movedFrame(s, x, y, ack))
	if !m.cfg.Interest {
		return
	}
	if len(m.entered) > 0 {
		enter := m.enterFrame(s, x, y)
		for _, o := range m.entered {
			other := m.members[o]
			ox, oy, _ := m.grid.Position(o)
			m.send(other, enter)
			m.send(s, m.enterFrame(other, ox, oy))
		}
		m.events.Add(2 * uint64(len(m.entered)))
	}
	if len(m.left) > 0 {
		leave := m.leaveFrame(s)
		for _, o := range m.left {
			other := m.members[o]
			m.send(other, leave)
			m.send(s, m.leaveFrame(other))
		}
		m.events.Add(2 * uint64(len(m.left)))
	}
	if !here {
		return
	}
	// Everyone within the radius now, but for s and the newcomers (told by their
	// enter), saw s before the move too.
	m.ids = m.grid.AppendCircle(m.ids[:0], x, y, m.cfg.InterestRadius)
	if len(m.ids) <= len(m.entered)+1 {
		return
	}
	slices.Sort(m.entered)
	update := m.updateFrame(s, x, y)
	for _, o := range m.ids {
		if o == id {
			continue
		}
		if _, isNew := slices.BinarySearch(m.entered, o); isNew {
			continue
		}
		m.send(m.members[o], update)
	}
}

// remove takes s off the map: the sessions that saw s see it leave, and s,
// when it stays connected, sees them leave.
func (m *worldMap) remove(s *session.Session, ack uint64, answer, stay bool) {
	id := s.Num
	if _, here := m.members[id]; here {
		delete(m.members, id)
		m.placed.Add(-1)
		if m.cfg.Interest {
			m.left, _ = m.grid.RemoveDiff(id, m.cfg.InterestRadius, m.left[:0])
		} else {
			m.grid.Remove(id)
			m.left = m.left[:0]
		}
	} else {
		m.left = m.left[:0]
	}
	if answer {
		m.send(s, leftFrame(s, ack))
	}
	if len(m.left) == 0 {
		return
	}
	leave := m.leaveFrame(s)
	for _, o := range m.left {
		other := m.members[o]
		m.send(other, leave)
		if stay {
			m.send(s, m.leaveFrame(other))
		}
	}
}

// region delivers one shared frame to every session in the area: the frame is
// encoded at most once per wire variant, by the first shard that needs it.
//
// The recipients go to each shard in lists rather than one inbox item each.
// BenchmarkRegionVsTopic/n=10000, run alternately with both builds on a busy
// 2-core box, measured a broadcast to 10,000 sessions at 1.0 to 2.5 ms with an
// item per recipient (1.0 to 1.9 times the topic publication to the same
// sessions) and 0.49 to 0.82 ms with lists (0.7 to 1.0 times the topic). The
// lists are recycled, so a broadcast allocates a closure per list (one per
// shard and per regionChunk recipients) and nothing per recipient.
func (m *worldMap) region(r *regionReq) {
	a := &r.area
	if a.Rect {
		m.ids = m.grid.AppendRect(m.ids[:0], a.MinX, a.MinY, a.MaxX, a.MaxY)
	} else {
		m.ids = m.grid.AppendCircle(m.ids[:0], a.X, a.Y, a.Radius)
	}
	shards := m.hub.shards
	for _, id := range m.ids {
		if len(r.exclude) > 0 && slices.Contains(r.exclude, id) {
			continue
		}
		s := m.members[id]
		k := int(s.Num % uint64(len(shards)))
		if m.out[k] == nil {
			select {
			case m.out[k] = <-m.lists:
			default:
				m.out[k] = new([]*session.Session)
			}
		}
		if *m.out[k] = append(*m.out[k], s); len(*m.out[k]) == regionChunk {
			m.handOver(k, r.frame)
		}
	}
	for k, list := range m.out {
		if list != nil {
			m.handOver(k, r.frame)
		}
	}
}

// regionChunk is the most recipients handed to a shard at once, so that the
// shards start on a large broadcast while the worker is still finding the
// rest of its recipients.
const regionChunk = 512

// handOver gives shard k its list of recipients for f.
func (m *worldMap) handOver(k int, f *session.Frame) {
	list := m.out[k]
	m.out[k] = nil
	m.hub.shards[k].deliver(item{kind: itemCommand, fn: func(sh *shard) {
		for _, s := range *list {
			if !s.Removed {
				sh.enqueue(s, f)
			}
		}
		clear(*list)
		*list = (*list)[:0]
		select {
		case m.lists <- list:
		default: // enough spares already
		}
	}})
}

// movedFrame answers a session's own placement.
func (m *worldMap) movedFrame(s *session.Session, x, y float64, ack uint64) *session.Frame {
	return session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MOVED, Id: ack, Map: m.name,
		X: x, Y: y, Entity: s.ID})
}

// leftFrame answers a session that left every map.
func leftFrame(s *session.Session, ack uint64) *session.Frame {
	return session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MOVED, Id: ack, Entity: s.ID})
}

// updateFrame tells the sessions that see s where it moved. On a conflated map
// a newer update of s replaces an older one still queued, and a slow client
// drops old updates rather than being disconnected.
func (m *worldMap) updateFrame(s *session.Session, x, y float64) *session.Frame {
	f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_MOVED, Map: m.name, X: x, Y: y, Entity: s.ID})
	if m.cfg.Conflate {
		f.Entity, f.Lossy, f.Linger = s.ID, true, m.cfg.FlushDelay
	}
	return f
}

func (m *worldMap) enterFrame(s *session.Session, x, y float64) *session.Frame {
	f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_ENTER, Map: m.name, X: x, Y: y,
		Entity: s.ID, User: s.User})
	m.fence(f, s)
	return f
}

func (m *worldMap) leaveFrame(s *session.Session) *session.Frame {
	f := session.NewFrame(&protocol.Envelope{Op: protocol.Op_OP_LEAVE, Map: m.name, Entity: s.ID})
	m.fence(f, s)
	return f
}

// fence keeps a conflated update of s from being moved across its enter or
// leave, which would show a client a position before the entity appeared or
// after it left.
func (m *worldMap) fence(f *session.Frame, s *session.Session) {
	if m.cfg.Conflate {
		f.Entity, f.Fence, f.Linger = s.ID, true, m.cfg.FlushDelay
	}
}
