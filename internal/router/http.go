package router

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/heraldgg/herald/internal/breaker"
	"github.com/heraldgg/herald/protocol"
)

// Proxy mode headers.
const (
	headerRoute   = "X-Herald-Route"
	headerSession = "X-Herald-Session"
	headerUser    = "X-Herald-User"
	headerNode    = "X-Herald-Node"
	headerNotify  = "X-Herald-Notify"
	headerEvent   = "X-Herald-Event"
	headerCode    = "X-Herald-Code"
	headerReason  = "X-Herald-Reason"
	// headerMetaPrefix is followed by the metadata key. HTTP header names are
	// case-insensitive, so a service sees keys in canonical case.
	headerMetaPrefix = "X-Herald-Meta-"
)

// httpTransport is proxy mode for one instance: its own keep-alive pool, so
// an instance that leaves takes its connections with it.
type httpTransport struct {
	base   string // scheme://host[:port][/prefix], no trailing "/"
	cfg    HTTPConfig
	pool   *http.Transport
	client *http.Client
}

func newHTTPTransport(addr string, cfg HTTPConfig) (*httpTransport, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("proxy address must be an http or https URL with a host")
	}
	pool := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.MaxIdleConns,
		MaxIdleConnsPerHost: cfg.MaxIdleConns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &httpTransport{
		base:   strings.TrimRight(addr, "/"),
		cfg:    cfg,
		pool:   pool,
		client: &http.Client{Transport: pool},
	}, nil
}

// reachable is always true: HTTP connections are made per request, so a dead
// instance shows up as a dial error, which the router knows was never sent.
func (t *httpTransport) reachable() bool { return true }

func (t *httpTransport) close() { t.pool.CloseIdleConnections() }

func (t *httpTransport) invoke(ctx context.Context, c *call) ([]byte, error) {
	hreq, err := t.newRequest(ctx, c)
	if err != nil {
		e := newError(ErrBadRequest, protocol.CodeBadRequest, c.service, truncate(err.Error()), err)
		e.outcome, e.unsent = breaker.Ignore, true
		return nil, e
	}
	resp, err := t.client.Do(hreq)
	if err != nil {
		return nil, httpTransportError(ctx, c.service, err)
	}
	defer resp.Body.Close()
	// Reading the body to its end is what returns the connection to the pool.
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(t.cfg.MaxResponseBytes)+1))
	if err != nil {
		return nil, httpTransportError(ctx, c.service, err)
	}
	if len(body) > t.cfg.MaxResponseBytes {
		return nil, newError(ErrService, protocol.CodeServiceError, c.service,
			c.service+": reply larger than "+strconv.Itoa(t.cfg.MaxResponseBytes)+" bytes", nil)
	}
	if v := resp.Header.Get(headerCode); v != "" {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil && n != 0 {
			reason := resp.Header.Get(headerReason)
			if reason == "" {
				reason = textOf(body)
			}
			return nil, newError(ErrService, serviceCode(uint32(n)), c.service, truncate(reason), nil)
		}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if c.op != opRequest {
			return nil, nil
		}
		return body, nil
	}
	return nil, httpStatusError(c.service, resp.StatusCode, body)
}

func (t *httpTransport) newRequest(ctx context.Context, c *call) (*http.Request, error) {
	var (
		target string
		body   io.Reader
	)
	if c.op == opEvent {
		target = t.base + t.cfg.EventPath
	} else {
		path := strings.ReplaceAll(t.cfg.Path, "{method}", url.PathEscape(c.method))
		path = strings.ReplaceAll(path, "{route}", url.PathEscape(c.req.Route))
		target = t.base + path
		body = bytes.NewReader(c.req.Data)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, target, body)
	if err != nil {
		return nil, err
	}
	h := hreq.Header
	if c.op == opEvent {
		ev := "connected"
		if c.ev.Type == protocol.SessionEventType_SESSION_EVENT_DISCONNECTED {
			ev = "disconnected"
		}
		h.Set(headerEvent, ev)
		setHeader(h, headerSession, c.ev.Session)
		setHeader(h, headerUser, c.ev.User)
		setHeader(h, headerNode, c.node)
		if c.ev.Code != 0 {
			h.Set(headerCode, strconv.FormatUint(uint64(c.ev.Code), 10))
		}
		setHeader(h, headerReason, c.ev.Reason)
		return hreq, nil
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set(headerRoute, c.req.Route)
	setHeader(h, headerSession, c.req.Session)
	setHeader(h, headerUser, c.req.User)
	if c.op == opNotify {
		h.Set(headerNotify, "1")
	}
	for k, v := range c.req.Meta {
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return nil, errors.New("metadata " + strconv.Quote(truncate(k)) + " cannot be sent as an HTTP header")
		}
		h.Set(headerMetaPrefix+k, v)
	}
	if c.op == opRequest && !httpguts.ValidHeaderFieldValue(c.req.Route) {
		return nil, errors.New("route cannot be sent as an HTTP header")
	}
	return hreq, nil
}

// setHeader sets a header Herald fills from its own state, dropping a value
// that is not a valid header value rather than failing the call.
func setHeader(h http.Header, key, v string) {
	if v != "" && httpguts.ValidHeaderFieldValue(v) {
		h.Set(key, v)
	}
}

// textOf returns body as a reason if it is short UTF-8 text.
func textOf(body []byte) string {
	if len(body) == 0 || len(body) > maxReasonLen || !utf8.Valid(body) {
		return ""
	}
	return strings.TrimSpace(string(body))
}

func httpTransportError(ctx context.Context, service string, err error) *Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		e := newError(ErrTimeout, protocol.CodeTimeout, service, service+": no reply in time", err)
		e.outcome = breaker.Failure
		return e
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		e := newError(ErrCanceled, protocol.CodeUnavailable, service, service+": request canceled", err)
		e.outcome = breaker.Ignore
		return e
	}
	e := newError(ErrUnavailable, protocol.CodeUnavailable, service, service+": service unavailable", err)
	e.outcome, e.retryable = breaker.Failure, true
	// A failed dial means the request never left Herald.
	var op *net.OpError
	e.unsent = errors.As(err, &op) && op.Op == "dial"
	return e
}

// httpStatusError maps a non-2xx status the way grpcError maps statuses:
// server failures count against the instance and may go elsewhere; client
// errors are the service's answer.
func httpStatusError(service string, status int, body []byte) *Error {
	reason := textOf(body)
	if reason == "" {
		reason = service + ": HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	}
	reason = truncate(reason)
	var e *Error
	switch status {
	case http.StatusBadRequest:
		e = newError(ErrService, protocol.CodeBadRequest, service, reason, nil)
	case http.StatusUnauthorized, http.StatusForbidden:
		e = newError(ErrService, protocol.CodePermissionDenied, service, reason, nil)
	case http.StatusNotFound:
		e = newError(ErrService, protocol.CodeNotFound, service, reason, nil)
	case http.StatusTooManyRequests:
		e = newError(ErrService, protocol.CodeRateLimited, service, reason, nil)
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		e = newError(ErrTimeout, protocol.CodeTimeout, service, reason, nil)
		e.outcome, e.retryable = breaker.Failure, true
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		e = newError(ErrUnavailable, protocol.CodeUnavailable, service, reason, nil)
		e.outcome, e.retryable = breaker.Failure, true
	default:
		e = newError(ErrService, protocol.CodeServiceError, service, reason, nil)
		if status >= 500 {
			e.outcome, e.retryable = breaker.Failure, true
		}
	}
	return e
}
