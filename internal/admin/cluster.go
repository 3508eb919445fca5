package admin

import (
	"net/http"
)

// nodes answers GET /api/nodes: the cluster's live nodes and their counts.
func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.api.Nodes(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

// presence answers GET /api/presence?topic=: who is subscribed, on which node.
func (s *Server) presence(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	users, err := s.api.Presence(r.Context(), topic)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "users": users})
}
