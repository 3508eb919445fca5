package admin

import (
	"encoding/json"
	"net/http"

	"github.com/heraldgg/herald/internal/hub"
	"github.com/heraldgg/herald/protocol"
)

// stringList is a JSON string or array of strings, so that excluding the one
// session that caused a broadcast needs no brackets.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		if one == "" {
			*l = nil
		}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// region is POST /api/region: {"map", "x", "y", "radius"} for a circle, or
// {"map", "x", "y", "w", "h"} for the rectangle [x, x+w] × [y, y+h], with
// "exclude" (a session id or a list of them) and "data".
func (s *Server) region(w http.ResponseWriter, r *http.Request) {
	req, data, ok := s.decode(w, r)
	if !ok {
		return
	}
	a := hub.Area{Map: req.Map, X: req.X, Y: req.Y, Radius: req.Radius}
	switch {
	case req.W != 0 || req.H != 0:
		if req.Radius != 0 {
			s.fail(w, r, protocol.Errorf(protocol.CodeBadRequest, "give radius, or w and h, not both"))
			return
		}
		if req.W < 0 || req.H < 0 {
			s.fail(w, r, protocol.Errorf(protocol.CodeBadPosition, "w and h must not be negative"))
			return
		}
		a.Rect = true
		a.MinX, a.MinY, a.MaxX, a.MaxY = req.X, req.Y, req.X+req.W, req.Y+req.H
	case req.Radius == 0:
		s.fail(w, r, protocol.Errorf(protocol.CodeBadRequest, "give a radius, or w and h"))
		return
	}
	if req.Map == "" {
		s.fail(w, r, protocol.Errorf(protocol.CodeBadRequest, "map is required"))
		return
	}
	if err := s.api.BroadcastRegion(r.Context(), a, req.Exclude, data); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// position is POST /api/position: {"session", "map", "x", "y"}; an empty map
// takes the session off its map.
func (s *Server) position(w http.ResponseWriter, r *http.Request) {
	req, _, ok := s.decode(w, r)
	if !ok {
		return
	}
	if err := s.api.SetPosition(r.Context(), req.Session, req.Map, req.X, req.Y); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
