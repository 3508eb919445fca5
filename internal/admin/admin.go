// Package admin is the operator's and game server's HTTP side: the server API
// (publish, broadcast, push, kick, region broadcast, positions), stats, health,
// Prometheus metrics and pprof. It binds to loopback unless configured
// otherwise; when an API key is set every /api/ call must present it, and the
// key is compared in constant time.
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldgg/herald/internal/api"
	"github.com/heraldgg/herald/protocol"
)

// Config is the admin listener's.
type Config struct {
	// APIKey, when set, must be sent with every /api/ request as
	// "Authorization: Bearer <key>" or "X-API-Key: <key>". Default: none (loopback only).
	APIKey string `koanf:"api_key"`
	// MaxBodySize bounds an API request body, in bytes. Default 1048576.
	MaxBodySize int64 `koanf:"max_body_size"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = 1 << 20
	}
	return c
}

// Server serves the admin HTTP API.
type Server struct {
	cfg   Config
	api   *api.Service
	stats func() any
	reg   *prometheus.Registry
	log   *slog.Logger
	ready atomic.Bool
	http  *http.Server
	ln    net.Listener
}

// New builds the admin server. stats returns the JSON body of /api/stats.
func New(cfg Config, svc *api.Service, stats func() any, reg *prometheus.Registry, log *slog.Logger) *Server {
	s := &Server{cfg: cfg.WithDefaults(), api: svc, stats: stats, reg: reg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/publish", s.auth(s.publish))
	mux.HandleFunc("POST /api/broadcast", s.auth(s.broadcast))
	mux.HandleFunc("POST /api/push", s.auth(s.push))
	mux.HandleFunc("POST /api/kick", s.auth(s.kick))
	mux.HandleFunc("POST /api/region", s.auth(s.region))
	mux.HandleFunc("POST /api/position", s.auth(s.position))
	mux.HandleFunc("GET /api/nodes", s.auth(s.nodes))
	mux.HandleFunc("GET /api/presence", s.auth(s.presence))
	mux.HandleFunc("GET /api/stats", s.auth(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.stats()) }))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	// Metrics and profiles reveal enough to need the key too; only the probes stay
	// open, for orchestrators.
	mux.HandleFunc("GET /metrics", s.auth(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("/debug/pprof/", s.auth(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", s.auth(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", s.auth(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", s.auth(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", s.auth(pprof.Trace))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// Start listens on addr and serves in the background.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin: serve failed", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// SetReady sets what /readyz reports.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Shutdown stops serving.
// Shutdown stops the admin API, waiting within ctx for requests in progress. Idle
// keep-alive connections that never sent a request are not closed by net/http's
// graceful shutdown for seconds, so once ctx ends whatever is left is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIKey == "" {
		return next
	}
	want := []byte(s.cfg.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-API-Key")
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = bearer
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			s.log.Warn("admin: request without a valid API key", "remote", r.RemoteAddr, "path", r.URL.Path)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "missing or wrong API key", Code: uint32(protocol.CodePermissionDenied)})
			return
		}
		next(w, r)
	}
}

type errorBody struct {
	Error string `json:"error"`
	Code  uint32 `json:"code,omitempty"`
}

// request is the body every POST /api/ call accepts; each uses its own fields.
type request struct {
	Topic   string          `json:"topic"`
	Data    json.RawMessage `json:"data"`
	DataB64 []byte          `json:"data_b64"`
	User    string          `json:"user"`
	Session string          `json:"session"`
	Reason  string          `json:"reason"`
	// Region and position fields.
	Map     string     `json:"map"`
	X       float64    `json:"x"`
	Y       float64    `json:"y"`
	Radius  float64    `json:"radius"`
	W       float64    `json:"w"`
	H       float64    `json:"h"`
	Exclude stringList `json:"exclude"`
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request) (request, []byte, bool) {
	var req request
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad JSON body: " + err.Error(), Code: uint32(protocol.CodeBadRequest)})
		return req, nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "bad JSON body: trailing data", Code: uint32(protocol.CodeBadRequest)})
		return req, nil, false
	}
	data := []byte(req.Data)
	if len(req.DataB64) > 0 {
		if len(data) > 0 {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "data and data_b64 are exclusive", Code: uint32(protocol.CodeBadRequest)})
			return req, nil, false
		}
		data = req.DataB64
	} else if len(data) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err == nil {
			data = buf.Bytes()
		}
	}
	return req, data, true
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	req, data, ok := s.decode(w, r)
	if !ok {
		return
	}
	pos, err := s.api.Publish(r.Context(), req.Topic, data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"offset": pos.Offset, "epoch": pos.Epoch})
}

func (s *Server) broadcast(w http.ResponseWriter, r *http.Request) {
	_, data, ok := s.decode(w, r)
	if !ok {
		return
	}
	if err := s.api.Broadcast(r.Context(), data); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) push(w http.ResponseWriter, r *http.Request) {
	req, data, ok := s.decode(w, r)
	if !ok {
		return
	}
	if err := s.api.Push(r.Context(), req.User, req.Session, data); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) kick(w http.ResponseWriter, r *http.Request) {
	req, _, ok := s.decode(w, r)
	if !ok {
		return
	}
	if err := s.api.Kick(r.Context(), req.User, req.Session, req.Reason); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var perr *protocol.Error
	if !errors.As(err, &perr) {
		perr = &protocol.Error{Code: protocol.CodeInternal, Reason: err.Error()}
	}
	status := http.StatusBadRequest
	switch perr.Code {
	case protocol.CodeUnavailable:
		status = http.StatusServiceUnavailable
	case protocol.CodeTimeout:
		status = http.StatusGatewayTimeout
	case protocol.CodeInternal:
		status = http.StatusInternalServerError
	case protocol.CodeNotFound:
		status = http.StatusNotFound
	}
	s.log.Info("admin: request failed", "path", r.URL.Path, "code", uint32(perr.Code), "err", perr.Reason)
	writeJSON(w, status, errorBody{Error: perr.Reason, Code: uint32(perr.Code)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
