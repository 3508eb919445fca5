package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServerStats is the part of the node's GET /api/stats answer the bench reads.
type ServerStats struct {
	Node          string  `json:"node"`
	Connections   uint64  `json:"connections"`
	Sessions      int64   `json:"sessions"`
	Topics        int     `json:"topics"`
	MessagesIn    uint64  `json:"messages_in"`
	MessagesOut   uint64  `json:"messages_out"`
	Published     uint64  `json:"published"`
	SlowConsumers uint64  `json:"slow_consumers"`
	Dropped       uint64  `json:"dropped"`
	RSSBytes      uint64  `json:"rss_bytes"`
	HeapBytes     uint64  `json:"heap_bytes"`
	Goroutines    int     `json:"goroutines"`
	CPUSeconds    float64 `json:"cpu_seconds"`
}

// admin talks to the node's admin API: stats, publish, and profiles.
type admin struct {
	base string // http://host:port, without a trailing slash
	key  string
	hc   *http.Client
}

func newAdmin(base, key string, conns int) *admin {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Publishers keep their connections: a new one per publish would measure the
	// TCP handshake and fill the machine with TIME_WAIT sockets.
	tr.MaxIdleConnsPerHost = conns + 2
	return &admin{base: strings.TrimRight(base, "/"), key: key, hc: &http.Client{Transport: tr}}
}

func (a *admin) close() { a.hc.CloseIdleConnections() }

func (a *admin) do(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return raw, resp.StatusCode, err
}

// stats reads /api/stats, within 10 s.
func (a *admin) stats(ctx context.Context) (ServerStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st ServerStats
	raw, code, err := a.do(ctx, http.MethodGet, "/api/stats", nil)
	if err != nil {
		return st, fmt.Errorf("bench: admin stats: %w", err)
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("bench: admin stats: HTTP %d: %s", code, bytes.TrimSpace(raw))
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("bench: admin stats: %w", err)
	}
	return st, nil
}

// collectGarbage makes the node run a full GC, through the heap profile's gc=1,
// so that heap figures count live objects only. Nodes whose pprof is unreachable
// are left alone: their heap figure is then only rougher.
func (a *admin) collectGarbage(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, code, err := a.do(ctx, http.MethodGet, "/debug/pprof/heap?gc=1", nil)
	return err == nil && code == http.StatusOK
}

// publishAnswer is POST /api/publish's answer.
type publishAnswer struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Error  string `json:"error"`
	Code   uint32 `json:"code"`
}

// publish posts body (a ready publish request) and returns the message's offset.
func (a *admin) publish(ctx context.Context, body []byte) (uint64, error) {
	raw, code, err := a.do(ctx, http.MethodPost, "/api/publish", body)
	if err != nil {
		return 0, err
	}
	var ans publishAnswer
	if err := json.Unmarshal(raw, &ans); err != nil {
		return 0, fmt.Errorf("HTTP %d: %w", code, err)
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: code %d: %s", code, ans.Code, ans.Error)
	}
	return ans.Offset, nil
}

// profile saves the node's profile of kind ("profile" for CPU over seconds,
// "heap", "goroutine") to dir/name.
func (a *admin) profile(ctx context.Context, dir, name, kind string, seconds int) error {
	path := "/debug/pprof/" + kind
	if seconds > 0 {
		path += "?seconds=" + strconv.Itoa(seconds)
	}
	raw, code, err := a.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("bench: %s profile: %w", kind, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("bench: %s profile: HTTP %d", kind, code)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), raw, 0o644)
}
