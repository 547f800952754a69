package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultHTTPTimeout bounds every request made by an HTTP helper that was
// not given its own timeout.
const DefaultHTTPTimeout = 10 * time.Second

// Response is one HTTP answer, read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// ErrorBody is the JSON body of every cairn error.
type ErrorBody struct {
	Error       string `json:"error"`
	Code        string `json:"code"`
	ModRevision *int64 `json:"mod_revision,omitempty"`
}

// Status is the answer of GET /v1/status; Hash and HashIndex are set
// only with ?hash=true.
type Status struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Leader struct {
		ID       string `json:"id"`
		HTTPAddr string `json:"http_addr"`
	} `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	Revision     int64  `json:"revision"`
	Hash         string `json:"hash"`
	HashIndex    uint64 `json:"hash_index"`
}

// Member is one entry of GET /v1/cluster/members.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Members is the answer of GET /v1/cluster/members.
type Members struct {
	Members []Member `json:"members"`
}

// WriteResult is the answer of PUT and DELETE on /v1/kv/{key}.
type WriteResult struct {
	Revision int64 `json:"revision"`
	Deleted  int64 `json:"deleted"`
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d body %q: %w", r.Status, truncate(r.Body), err)
	}
	return nil
}

// Error decodes the body as a cairn error; ok is false when it is not one
// (not JSON, or no code).
func (r *Response) Error() (e ErrorBody, ok bool) {
	if json.Unmarshal(r.Body, &e) != nil || e.Code == "" {
		return ErrorBody{}, false
	}
	return e, true
}

// HeaderInt parses the integer header name; ok is false when it is absent
// or not an integer.
func (r *Response) HeaderInt(name string) (n int64, ok bool) {
	v := r.Header.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// String describes the response for test messages.
func (r *Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, truncate(r.Body))
}

func truncate(b []byte) string {
	const max = 300
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("...(%d bytes)", len(b))
	}
	return string(b)
}

// HTTP is a small client for one node. It is safe for concurrent use.
type HTTP struct {
	// Base is the URL of the node, such as http://127.0.0.1:8001.
	Base string
	// Client makes the requests; its Timeout bounds each one.
	Client *http.Client
}

// NewHTTP returns a helper for the node at base (http://host:port) with
// its own client and DefaultHTTPTimeout.
func NewHTTP(base string) *HTTP {
	return &HTTP{Base: base, Client: newHTTPClient()}
}

func newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // only 127.0.0.1 is ever a target
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: DefaultHTTPTimeout}
}

// KeyPath returns the request path of key: /v1/kv/ followed by the key
// with each /-separated segment escaped.
func KeyPath(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/kv/" + strings.Join(segs, "/")
}

// Do sends method to Base+path (path is sent as written, so it may carry
// its own escapes and query) with body and extra headers, and reads the
// whole answer.
func (h *HTTP) Do(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.Base+path, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func withQuery(path string, query []string) string {
	if len(query) == 0 {
		return path
	}
	return path + "?" + strings.Join(query, "&")
}

// Put stores value under key. Each query element is one "name=value".
func (h *HTTP) Put(key string, value []byte, query ...string) (*Response, error) {
	if value == nil {
		value = []byte{}
	}
	return h.Do(context.Background(), http.MethodPut, withQuery(KeyPath(key), query), value, nil)
}

// Get reads key. Each query element is one "name=value", such as
// "consistency=stale".
func (h *HTTP) Get(key string, query ...string) (*Response, error) {
	return h.Do(context.Background(), http.MethodGet, withQuery(KeyPath(key), query), nil, nil)
}

// Delete deletes key.
func (h *HTTP) Delete(key string, query ...string) (*Response, error) {
	return h.Do(context.Background(), http.MethodDelete, withQuery(KeyPath(key), query), nil, nil)
}

// GetJSON reads GET path (with its own escapes and query) and decodes
// the body of a 200 answer into v; another status is an error.
func (h *HTTP) GetJSON(ctx context.Context, path string, v any) error {
	r, err := h.Do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, r)
	}
	return r.JSON(v)
}

// Status reads GET /v1/status.
func (h *HTTP) Status(ctx context.Context) (Status, error) {
	var s Status
	err := h.GetJSON(ctx, "/v1/status", &s)
	return s, err
}

// Members reads GET /v1/cluster/members.
func (h *HTTP) Members(ctx context.Context) ([]Member, error) {
	var m Members
	err := h.GetJSON(ctx, "/v1/cluster/members", &m)
	return m.Members, err
}
