package gateway

import (
	"errors"

	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/internal/session"
	"github.com/heraldgg/herald/protocol"
)

// move places the session where the client asks, on a map that lets clients
// move, or takes it off its map when the map is empty. The answer, a moved
// frame, comes from the map once the position is in effect; refusals are
// answered here and change nothing.
func (g *Gateway) move(cl *client, s *session.Session, env *protocol.Envelope) {
	if env.Map != "" {
		mc, ok := g.hub.MapConfig(env.Map)
		if !ok {
			g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodeNotFound, "no map %q on this node", env.Map))
			return
		}
		if !mc.ClientMove {
			g.replyErr(cl, s, s.Codec, env.Id, protocol.Errorf(protocol.CodePermissionDenied, "clients may not move on map %q", env.Map))
			return
		}
	}
	if err := g.hub.Place(s, env.Map, env.X, env.Y, env.Id); err != nil {
		g.replyErr(cl, s, s.Codec, env.Id, placeError(err, env.Map, env.X, env.Y))
	}
}

// placeError turns a hub placement error into the wire error the client is
// answered with.
func placeError(err error, mapName string, x, y float64) error {
	switch {
	case errors.Is(err, hub.ErrNoMap):
		return protocol.Errorf(protocol.CodeNotFound, "no map %q on this node", mapName)
	case errors.Is(err, hub.ErrOutOfBounds):
		return protocol.Errorf(protocol.CodeBadPosition, "position (%g, %g) is outside map %q", x, y, mapName)
	case errors.Is(err, hub.ErrSessionGone):
		return protocol.Errorf(protocol.CodeNotFound, "session is closing")
	}
	return err
}
