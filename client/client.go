package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Response headers the server sets.
const (
	headerRevision       = "X-Cairn-Revision"
	headerModRevision    = "X-Cairn-Mod-Revision"
	headerCreateRevision = "X-Cairn-Create-Revision"
	headerVersion        = "X-Cairn-Version"
	headerNode           = "X-Cairn-Node"
	headerIdempotencyKey = "Idempotency-Key"
)

// maxErrorBody bounds how much of an error response is read for its JSON.
const maxErrorBody = 64 << 10

// Client talks to a cairn cluster over HTTP. It is safe for concurrent use
// by multiple goroutines; create one per cluster and share it.
type Client struct {
	cfg       Config   // with defaults applied
	endpoints []string // base URLs, e.g. http://127.0.0.1:8001
	hc        *http.Client
	transport *http.Transport // nil when Config.HTTPClient was given
	preferred atomic.Int32    // index of the endpoint that answered last
	closed    atomic.Bool
	watchIdle time.Duration // DefaultWatchIdleTimeout; shorter in tests
}

// Meta describes how a call was served; every response embeds it, much as
// Consul's QueryMeta.
type Meta struct {
	// Revision is the store revision the answer reflects (the
	// X-Cairn-Revision header, or the revision a write created).
	Revision int64
	// Node is the ID of the node that produced the answer (X-Cairn-Node):
	// the leader when the endpoint forwarded the request.
	Node string
	// Endpoint is the base URL of the endpoint the client sent the
	// successful request to.
	Endpoint string
}

// New returns a Client for cfg after checking it with cfg.Validate. It does
// not contact the cluster.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg, watchIdle: DefaultWatchIdleTimeout}
	seen := map[string]bool{}
	for _, e := range cfg.Endpoints {
		u, _ := parseEndpoint(e) // checked by Validate
		if !seen[u] {
			seen[u] = true
			c.endpoints = append(c.endpoints, u)
		}
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		hc.CheckRedirect = noRedirect
		c.hc = &hc
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
		t.MaxIdleConnsPerHost = 64
		c.transport = t
		c.hc = &http.Client{Transport: t, CheckRedirect: noRedirect}
	}
	return c, nil
}

// Endpoints returns the base URLs the client uses, in configuration order.
func (c *Client) Endpoints() []string {
	return append([]string(nil), c.endpoints...)
}

// Close closes the client's idle connections. Calls made after Close fail
// with ErrClosed; calls in flight finish normally. A Config.HTTPClient
// given by the caller is left alone.
func (c *Client) Close() error {
	c.closed.Store(true)
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	return nil
}

// request is one logical call, which may take several attempts.
type request struct {
	method      string
	path        string // escaped, starting with "/"
	query       url.Values
	body        []byte
	contentType string
	write       bool   // PUT, DELETE or POST: retried only when safe
	key         string // the KV key, for error messages
	idemKey     string // caller's Idempotency-Key, if any
}

// do runs r with failover and retries, calling handle on the first 2xx
// response. handle reads what it needs from the body; do drains and closes
// it afterwards.
func (c *Client) do(ctx context.Context, r *request, handle func(*http.Response, *Meta) error) (*Meta, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	userKey := r.idemKey != ""
	idem := r.idemKey
	if r.write && idem == "" && c.cfg.MaxRetries > 0 {
		idem = rand.Text() // one key for every attempt of this call
	}
	n := len(c.endpoints)
	start := int(c.preferred.Load())
	backoff := c.cfg.RetryBackoff
	var prevErr error // the previous attempt's error
	for attempt := 0; attempt <= c.cfg.MaxRetries; attempt++ {
		if attempt >= n { // every endpoint has been tried in this call
			if err := sleep(ctx, backoff); err != nil {
				return nil, fmt.Errorf("%w (gave up after %d attempts; last error: %w)", err, attempt, prevErr)
			}
			backoff = min(2*backoff, c.cfg.MaxRetryBackoff)
		}
		idx := (start + attempt) % n
		m, retry, healthy, err := c.attempt(ctx, c.endpoints[idx], r, idem, userKey, handle)
		if healthy {
			c.preferred.Store(int32(idx))
		}
		if err == nil {
			return m, nil
		}
		if cerr := ctx.Err(); cerr != nil && (retry || errors.Is(err, cerr)) {
			// The caller's context ended: report that, and what the
			// retries were for.
			if !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (gave up after %d attempts; last error: %w)", cerr, attempt+1, err)
			} else if prevErr != nil {
				err = fmt.Errorf("%w (attempt %d; the one before failed with: %w)", err, attempt+1, prevErr)
			}
			return nil, err
		}
		if !retry {
			return nil, err
		}
		prevErr = err
	}
	if c.cfg.MaxRetries == 0 {
		return nil, prevErr
	}
	return nil, fmt.Errorf("%w (gave up after %d attempts)", prevErr, c.cfg.MaxRetries+1)
}

// sleep waits d, or returns ctx's error at once if ctx ends first or its
// deadline leaves less than d.
func sleep(ctx context.Context, d time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt sends r once to endpoint ep. It reports whether the failure may be
// retried, and whether the endpoint proved healthy (answered with anything
// but an unavailable status).
func (c *Client) attempt(ctx context.Context, ep string, r *request, idem string, userKey bool,
	handle func(*http.Response, *Meta) error) (m *Meta, retry, healthy bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	// sent turns true once the request has a connection to go out on;
	// until then the server provably has not seen it.
	var sent atomic.Bool
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { sent.Store(true) },
	})

	u := ep + r.path
	if q := r.query.Encode(); q != "" {
		u += "?" + q
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, u, body)
	if err != nil {
		return nil, false, false, fmt.Errorf("client: building request: %w", err)
	}
	req.Header.Set("User-Agent", "cairn-go-client")
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if idem != "" {
		req.Header.Set(headerIdempotencyKey, idem)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, false, false, err
		case !r.write, userKey:
			return nil, true, false, err
		case !sent.Load() || isDialError(err):
			return nil, true, false, err
		default:
			return nil, false, false, fmt.Errorf("%w (the write may have been applied; "+
				"it is retried after such errors only with WithIdempotencyKey)", err)
		}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()

	m = &Meta{
		Revision: headerInt(resp.Header, headerRevision),
		Node:     resp.Header.Get(headerNode),
		Endpoint: ep,
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if err := handle(resp, m); err != nil {
			return nil, false, true, fmt.Errorf("client: %s %s: %w", r.method, ep+r.path, err)
		}
		return m, false, true, nil
	}
	serr, extra := readStatusError(resp, ep)
	err = serr
	if serr.Code == "cas_conflict" || (serr.StatusCode == http.StatusConflict && serr.Code == "") {
		err = &ConflictError{Key: r.key, ModRevision: extra.ModRevision, Status: serr}
	}
	switch resp.StatusCode {
	case http.StatusServiceUnavailable:
		// no_leader and not_ready mean nothing was applied.
		safe := serr.Code == "no_leader" || serr.Code == "not_ready"
		return nil, safe || !r.write || userKey, false, err
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return nil, !r.write || userKey, false, err
	}
	return nil, false, true, err
}

// isDialError reports whether err happened while connecting, before any
// byte of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// errorExtra holds the fields some error bodies carry besides error and
// code.
type errorExtra struct {
	// ModRevision is the key's current mod revision, in a 409.
	ModRevision int64 `json:"mod_revision"`
	// OldestRevision is the oldest revision a watch can start at, in a 410.
	OldestRevision int64 `json:"oldest_revision"`
}

// readStatusError builds a *StatusError from a non-2xx response; it also
// returns the body's extra fields (mod_revision, oldest_revision).
func readStatusError(resp *http.Response, ep string) (*StatusError, errorExtra) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
		errorExtra
	}
	se := &StatusError{StatusCode: resp.StatusCode, Endpoint: ep}
	if json.Unmarshal(b, &body) == nil && (body.Error != "" || body.Code != "") {
		se.Code, se.Message = body.Code, body.Error
	} else {
		se.Message = strings.TrimSpace(string(b))
		if len(se.Message) > 200 {
			se.Message = se.Message[:200] + "..."
		}
	}
	return se, body.errorExtra
}

// headerInt parses an integer header, 0 when absent or malformed.
func headerInt(h http.Header, name string) int64 {
	n, _ := strconv.ParseInt(h.Get(name), 10, 64)
	return n
}

// decodeJSON decodes a JSON response body into v.
func decodeJSON(resp *http.Response, v any) error {
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}
