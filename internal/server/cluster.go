package server

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/config"
)

// presenceBatch bounds one UpdatePresence call, so a resync of a full node is sent
// in pieces the broker digests without a long stall.
const presenceBatch = 10000

// runPresence keeps this node's entry in the cluster registry: it announces the
// node every third of the TTL, sends the hub's user and topic changes every flush
// interval, and re-sends everything when the registry lost the node's entries (a
// broker restarted without persistence). It returns when ctx ends, after a last
// flush and leaving the registry.
func (s *Server) runPresence(ctx context.Context, p broker.Presence) {
	defer close(s.presenceDone)
	ttl := s.cfg.Cluster.PresenceTTL
	announce := time.NewTicker(ttl / 3)
	defer announce.Stop()
	flush := time.NewTicker(s.cfg.Cluster.PresenceFlush)
	defer flush.Stop()
	var retry []broker.Change
	send := func(c context.Context, changes []broker.Change) error {
		for len(changes) > 0 {
			n := min(len(changes), presenceBatch)
			if err := p.UpdatePresence(c, s.cfg.Node, changes[:n]); err != nil {
				return err
			}
			changes = changes[n:]
		}
		return nil
	}
	resync := func() {
		resynced, err := p.Announce(ctx, s.nodeInfo(), ttl)
		if err != nil {
			s.log.Warn("cluster: announce failed", "err", err)
			return
		}
		if resynced {
			all := s.hub.ResyncPresence()
			retry = nil
			if err := send(ctx, all); err != nil {
				s.log.Warn("cluster: presence resync failed", "entries", len(all), "err", err)
				retry = all
				return
			}
			s.log.Info("cluster: presence resynchronised", "entries", len(all))
		}
	}
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = send(last, append(retry, s.hub.TakePresence()...))
			if err := p.Leave(last, s.cfg.Node); err != nil {
				s.log.Warn("cluster: leave failed", "err", err)
			}
			cancel()
			return
		case <-announce.C:
			resync()
		case <-flush.C:
			changes := append(retry, s.hub.TakePresence()...)
			retry = nil
			if len(changes) == 0 {
				continue
			}
			switch err := send(ctx, changes); {
			case errors.Is(err, broker.ErrLapsed):
				resync()
			case err != nil:
				s.log.Warn("cluster: presence update failed, will retry", "changes", len(changes), "err", err)
				retry = changes
			}
		}
	}
}

func (s *Server) nodeInfo() broker.NodeInfo {
	gs := s.gw.Stats()
	addr := s.cfg.Listen.Client
	if a := s.ws.Addr(); a != nil {
		addr = a.String()
	}
	return broker.NodeInfo{
		Name:        s.cfg.Node,
		ClientAddr:  addr,
		Version:     buildVersion(),
		Connections: int(gs.Connections),
		Sessions:    int(s.hub.Connections()),
		Users:       s.hub.Users(),
		StartedAt:   s.started,
	}
}

func buildVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return info.Main.Version
	}
	return ""
}

// alone reports a node on the memory broker, which has no cluster to announce
// itself to: the hub answers presence queries itself (localPresence).
func (s *Server) alone() bool {
	kind, _ := config.BrokerKind(s.cfg.Broker.URL)
	return kind == "memory"
}

// localPresence answers the server API's presence queries from this node alone.
type localPresence struct{ s *Server }

func (l localPresence) Nodes(context.Context) ([]broker.NodeInfo, error) {
	return []broker.NodeInfo{l.s.nodeInfo()}, nil
}

func (l localPresence) TopicUsers(ctx context.Context, topic string) ([]broker.PresenceEntry, error) {
	users, err := l.s.hub.TopicUsers(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make([]broker.PresenceEntry, len(users))
	for i, u := range users {
		out[i] = broker.PresenceEntry{User: u, Node: l.s.cfg.Node}
	}
	return out, nil
}
