// Package clienttest provides an in-memory imitation of a one-node cairn
// HTTP API, for testing code that uses package client (or the cairn CLI)
// without starting a cluster. It follows docs/http-api.md closely but has
// no Raft: every node-level answer says it is the leader. It serves keys,
// listings, transactions (POST /v1/txn) and watches (GET /v1/watch/...,
// with progress lines every ProgressInterval), and lets tests cut watch
// streams (CutWatches) and forget history (Compact).
package clienttest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// DefaultMaxValueSize is the value size limit of a new Server (1 MiB).
const DefaultMaxValueSize = 1 << 20

// NodeID is the node ID the fake reports in X-Cairn-Node and its status.
const NodeID = "n1"

// Server is a fake cairn node serving the HTTP API from memory. Its
// methods and handlers are safe for concurrent use.
type Server struct {
	*httptest.Server

	mu           sync.Mutex
	rev          int64
	kvs          map[string]*entry
	members      []member
	seen         map[string]cachedAnswer
	maxValueSize int
	requests     int
	connections  int

	events    []event       // every change, oldest first, from oldest on
	oldest    int64         // the oldest revision a watch may start at
	changed   chan struct{} // closed and replaced on every change
	cutWatch  chan struct{} // closed and replaced by CutWatches
	watchRevs []int64       // the rev= of every watch request, 0 for none
}

type entry struct {
	value                []byte
	create, mod, version int64
	expires              time.Time
}

type member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

type cachedAnswer struct {
	status int
	body   any
}

// NewServer starts a fake node on a local port and closes it when the test
// ends. Its store is empty at revision 0, its only member is NodeID.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s := Start()
	tb.Cleanup(s.Close)
	return s
}

// Start starts a fake node like NewServer, outside a test (in an Example,
// say); the caller must Close it.
func Start() *Server {
	s := &Server{
		kvs:          map[string]*entry{},
		seen:         map[string]cachedAnswer{},
		maxValueSize: DefaultMaxValueSize,
		oldest:       1,
		changed:      make(chan struct{}),
		cutWatch:     make(chan struct{}),
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		w.Header().Set("X-Cairn-Node", NodeID)
		s.mu.Unlock()
		s.route(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.mu.Lock()
			s.connections++
			s.mu.Unlock()
		}
	}
	s.Start()
	s.members = []member{{ID: NodeID, RaftAddr: "127.0.0.1:9001", HTTPAddr: s.Addr(), Voter: true, Leader: true}}
	return s
}

// Addr returns the server's host:port, as an endpoint for client.Config.
func (s *Server) Addr() string { return strings.TrimPrefix(s.URL, "http://") }

// SetMaxValueSize sets the largest value PUT accepts; larger ones get 413.
func (s *Server) SetMaxValueSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxValueSize = n
}

// Requests returns how many requests the server has received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Connections returns how many TCP connections clients have opened to the
// server; with keep-alive working it stays at one per client.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// Revision returns the store's current revision.
func (s *Server) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Value returns the stored value of key and whether it exists.
func (s *Server) Value(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.lookup(key)
	if e == nil {
		return nil, false
	}
	return append([]byte(nil), e.value...), true
}

// lookup returns the live entry for key, dropping it if expired. The caller
// holds s.mu.
func (s *Server) lookup(key string) *entry {
	e := s.kvs[key]
	if e != nil && !e.expires.IsZero() && time.Now().After(e.expires) {
		delete(s.kvs, key)
		return nil
	}
	return e
}

// route dispatches a request by hand, like the real server, so that keys
// keep every byte of the path.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/v1/kv/"):
		key := strings.TrimPrefix(path, "/v1/kv/")
		switch r.Method {
		case http.MethodGet:
			s.get(w, r, key)
		case http.MethodPut:
			s.put(w, r, key)
		case http.MethodDelete:
			s.del(w, r, key)
		default:
			methodNotAllowed(w, "GET, PUT, DELETE")
		}
	case path == "/v1/txn":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		s.txn(w, r)
	case strings.HasPrefix(path, "/v1/watch/"):
		if r.Method != http.MethodGet {
			methodNotAllowed(w, "GET")
			return
		}
		s.watch(w, r, strings.TrimPrefix(path, "/v1/watch/"))
	case path == "/v1/status" && r.Method == http.MethodGet:
		s.status(w, r)
	case path == "/v1/cluster/members":
		switch r.Method {
		case http.MethodGet:
			s.listMembers(w, r)
		case http.MethodPost:
			s.addMember(w, r)
		default:
			methodNotAllowed(w, "GET, POST")
		}
	case strings.HasPrefix(path, "/v1/cluster/members/") && r.Method == http.MethodDelete:
		s.removeMember(w, r, strings.TrimPrefix(path, "/v1/cluster/members/"))
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+path)
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed; use "+allow)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": msg, "code": code})
}

// validKey checks a key as the real server does.
func validKey(w http.ResponseWriter, key string) bool {
	switch {
	case key == "":
		writeError(w, http.StatusBadRequest, "invalid_key", "empty key")
	case len(key) > 1024:
		writeError(w, http.StatusBadRequest, "invalid_key", "key longer than 1024 bytes")
	case !utf8.ValidString(key) || strings.ContainsRune(key, 0):
		writeError(w, http.StatusBadRequest, "invalid_key", "key is not UTF-8 or contains NUL")
	default:
		return true
	}
	return false
}

// intParam parses an optional non-negative integer query parameter.
func intParam(w http.ResponseWriter, r *http.Request, name string) (int64, bool, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, false, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad "+name+": "+strconv.Quote(v))
		return 0, false, false
	}
	return n, true, true
}

func validConsistency(w http.ResponseWriter, r *http.Request) bool {
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable", "leader", "stale":
		return true
	default:
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad consistency: "+strconv.Quote(c))
		return false
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, key string) {
	if !validConsistency(w, r) {
		return
	}
	if _, _, ok := intParam(w, r, "min_revision"); !ok {
		return
	}
	if key == "" {
		s.list(w, r)
		return
	}
	if !validKey(w, key) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("X-Cairn-Revision", strconv.FormatInt(s.rev, 10))
	e := s.lookup(key)
	if e == nil {
		writeError(w, http.StatusNotFound, "key_not_found", "key not found: "+key)
		return
	}
	w.Header().Set("X-Cairn-Mod-Revision", strconv.FormatInt(e.mod, 10))
	w.Header().Set("X-Cairn-Create-Revision", strconv.FormatInt(e.create, 10))
	w.Header().Set("X-Cairn-Version", strconv.FormatInt(e.version, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(e.value)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _, ok := intParam(w, r, "limit")
	if !ok {
		return
	}
	if limit == 0 || limit > 1000 {
		limit = 1000
	}
	prefix, after, keysOnly := q.Get("prefix"), q.Get("after"), q.Get("keys") == "true"
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.kvs {
		if strings.HasPrefix(k, prefix) && k > after && s.lookup(k) != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	more := int64(len(keys)) > limit
	if more {
		keys = keys[:limit]
	}
	kvs := []map[string]any{}
	for _, k := range keys {
		e := s.kvs[k]
		m := map[string]any{"key": k, "create_revision": e.create, "mod_revision": e.mod, "version": e.version}
		if !keysOnly {
			if utf8.Valid(e.value) {
				m["value"] = string(e.value)
			} else {
				m["value_base64"] = base64.StdEncoding.EncodeToString(e.value)
			}
		}
		kvs = append(kvs, m)
	}
	w.Header().Set("X-Cairn-Revision", strconv.FormatInt(s.rev, 10))
	writeJSON(w, http.StatusOK, map[string]any{"revision": s.rev, "kvs": kvs, "more": more})
}

// replay answers a write whose Idempotency-Key was seen before. The caller
// holds s.mu.
func (s *Server) replay(w http.ResponseWriter, r *http.Request) bool {
	k := r.Header.Get("Idempotency-Key")
	if a, ok := s.seen[r.Method+" "+k]; ok && k != "" {
		w.Header().Set("X-Cairn-Revision", strconv.FormatInt(s.rev, 10))
		writeJSON(w, a.status, a.body)
		return true
	}
	return false
}

// answer writes a write's answer and remembers it under its
// Idempotency-Key. The caller holds s.mu.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, status int, body any) {
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		s.seen[r.Method+" "+k] = cachedAnswer{status, body}
	}
	w.Header().Set("X-Cairn-Revision", strconv.FormatInt(s.rev, 10))
	writeJSON(w, status, body)
}

// casFails reports, and answers, a failed ?cas=R check. The caller holds
// s.mu.
func (s *Server) casFails(w http.ResponseWriter, r *http.Request, key string, cas int64) bool {
	var cur int64
	if e := s.lookup(key); e != nil {
		cur = e.mod
	}
	if cur == cas {
		return false
	}
	s.answer(w, r, http.StatusConflict, map[string]any{
		"error": "compare-and-swap failed: mod revision of " + strconv.Quote(key) + " is " + strconv.FormatInt(cur, 10),
		"code":  "cas_conflict", "mod_revision": cur,
	})
	return true
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key) {
		return
	}
	cas, hasCAS, ok := intParam(w, r, "cas")
	if !ok {
		return
	}
	var ttl time.Duration
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "bad ttl: "+strconv.Quote(v))
			return
		}
		ttl = d
	}
	s.mu.Lock()
	limit := s.maxValueSize
	s.mu.Unlock()
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				"value larger than "+strconv.Itoa(limit)+" bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_argument", "reading body: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay(w, r) || (hasCAS && s.casFails(w, r, key, cas)) {
		return
	}
	s.rev++
	e := s.lookup(key)
	if e == nil {
		e = &entry{create: s.rev}
		s.kvs[key] = e
	}
	e.value, e.mod, e.expires = value, s.rev, time.Time{}
	e.version++
	if ttl > 0 {
		e.expires = time.Now().Add(ttl)
	}
	s.record(event{typ: "put", key: key, e: *e})
	s.answer(w, r, http.StatusOK, map[string]any{"revision": s.rev})
}

func (s *Server) del(w http.ResponseWriter, r *http.Request, key string) {
	if !validKey(w, key) {
		return
	}
	cas, hasCAS, ok := intParam(w, r, "cas")
	if !ok {
		return
	}
	prefix := r.URL.Query().Get("prefix") == "true"
	if prefix && hasCAS {
		writeError(w, http.StatusBadRequest, "invalid_argument", "cas cannot be combined with prefix")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay(w, r) || (hasCAS && s.casFails(w, r, key, cas)) {
		return
	}
	var victims []string
	for k := range s.kvs {
		if (k == key || (prefix && strings.HasPrefix(k, key))) && s.lookup(k) != nil {
			victims = append(victims, k)
		}
	}
	if len(victims) > 0 {
		s.rev++
		sort.Strings(victims)
		for _, k := range victims {
			s.record(event{typ: "delete", key: k, e: entry{create: s.kvs[k].create, mod: s.rev}})
			delete(s.kvs, k)
		}
	}
	s.answer(w, r, http.StatusOK, map[string]any{"revision": s.rev, "deleted": len(victims)})
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": NodeID, "state": "Leader",
		"leader": map[string]string{"id": NodeID, "http_addr": s.Addr()},
		"term":   1, "commit_index": s.rev + 1, "applied_index": s.rev + 1, "revision": s.rev,
	})
}

func (s *Server) listMembers(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"members": s.members})
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	var m member
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json", err.Error())
		return
	}
	if m.ID == "" || m.RaftAddr == "" || m.HTTPAddr == "" || m.Voter || m.Leader {
		writeError(w, http.StatusBadRequest, "invalid_argument", "id, raft_addr and http_addr are required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m.Voter = true
	found := false
	for i := range s.members {
		if s.members[i].ID == m.ID {
			s.members[i], found = m, true
		}
	}
	if !found {
		s.members = append(s.members, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": s.members})
}

func (s *Server) removeMember(w http.ResponseWriter, _ *http.Request, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.members {
		if s.members[i].ID == id {
			s.members = append(s.members[:i], s.members[i+1:]...)
			writeJSON(w, http.StatusOK, map[string]any{"members": s.members})
			return
		}
	}
	writeError(w, http.StatusNotFound, "member_not_found", "no member with ID "+strconv.Quote(id))
}
