package api

import (
	"context"
	"errors"
	"strings"

	"github.com/heraldgg/herald/internal/broker"
	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/protocol"
)

// Maps is what the API checks positions and areas against: the node's maps
// (*hub.Hub). Every node of a cluster is configured with the same maps, so the
// node that takes a call can refuse a bad one for all of them.
type Maps interface {
	CheckPosition(mapName string, x, y float64) error
	CheckArea(a hub.Area) error
}

// Option configures a Service.
type Option func(*Service)

// WithMaps lets the Service place sessions and broadcast to regions of maps.
func WithMaps(m Maps) Option { return func(s *Service) { s.maps = m } }

// BroadcastRegion delivers data, as a msg of kind region, to every session
// within a on every node, except the sessions whose ids are in exclude.
// Errors: not found for an unknown map, bad position for an area no session
// can be in (see hub.CheckArea), bad request for oversized data.
func (s *Service) BroadcastRegion(ctx context.Context, a hub.Area, exclude []string, data []byte) error {
	if err := s.checkData(data); err != nil {
		return err
	}
	if s.maps == nil {
		return protocol.Errorf(protocol.CodeNotFound, "no map %q on this node", a.Map)
	}
	if err := s.maps.CheckArea(a); err != nil {
		return mapError(err, a.Map)
	}
	return s.control(ctx, hub.AreaControl(a, exclude, data))
}

// SetPosition places the session at (x, y) on mapName, wherever in the cluster
// it is connected, or takes it off its map when mapName is "". The client is
// told with a moved frame (id 0), then receives the enter and leave events the
// move causes. A session that is not connected anywhere is not an error: the
// call cannot know.
func (s *Service) SetPosition(ctx context.Context, session, mapName string, x, y float64) error {
	if session == "" {
		return protocol.Errorf(protocol.CodeBadRequest, "session is required")
	}
	if mapName != "" {
		if s.maps == nil {
			return protocol.Errorf(protocol.CodeNotFound, "no map %q on this node", mapName)
		}
		if err := s.maps.CheckPosition(mapName, x, y); err != nil {
			if errors.Is(err, hub.ErrOutOfBounds) {
				return protocol.Errorf(protocol.CodeBadPosition, "position (%g, %g) is outside map %q", x, y, mapName)
			}
			return mapError(err, mapName)
		}
	} else {
		x, y = 0, 0
	}
	return s.control(ctx, &broker.Control{Kind: broker.ControlPosition, Session: session, Map: mapName, X: x, Y: y})
}

func mapError(err error, mapName string) error {
	switch {
	case errors.Is(err, hub.ErrNoMap):
		return protocol.Errorf(protocol.CodeNotFound, "no map %q on this node", mapName)
	case errors.Is(err, hub.ErrBadArea):
		return protocol.Errorf(protocol.CodeBadPosition, "%s", strings.TrimPrefix(err.Error(), hub.ErrBadArea.Error()+": "))
	}
	return err
}
