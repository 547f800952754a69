package clienttest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxTxnOps is the server's limit on comparisons and on operations per
// branch of a transaction.
const maxTxnOps = 128

// ProgressInterval is how often a watch stream of the fake sends a
// progress line when no events flow (the real server: every 5s).
const ProgressInterval = 200 * time.Millisecond

// event is one change, as a watch reports it.
type event struct {
	typ string // "put" or "delete"
	key string
	e   entry // after a put; for a delete: create and mod (the deletion's revision)
}

// record appends ev to the history and wakes the watches. The caller holds
// s.mu.
func (s *Server) record(ev event) {
	s.events = append(s.events, ev)
	close(s.changed)
	s.changed = make(chan struct{})
}

// CutWatches ends every watch stream in progress abruptly, without a final
// line, as a crashing node would.
func (s *Server) CutWatches() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.cutWatch)
	s.cutWatch = make(chan struct{})
}

// Compact forgets the history before revision rev: watches from an older
// revision get 410 compacted.
func (s *Server) Compact(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oldest = rev
}

// WatchRevisions returns the rev= query parameter of every watch request
// received so far, in order (0 when absent).
func (s *Server) WatchRevisions() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.watchRevs...)
}

func valueFields(m map[string]any, v []byte) {
	if utf8.Valid(v) {
		m["value"] = string(v)
	} else {
		m["value_base64"] = base64.StdEncoding.EncodeToString(v)
	}
}

func (ev *event) json() map[string]any {
	m := map[string]any{"type": ev.typ, "key": ev.key, "create_revision": ev.e.create, "mod_revision": ev.e.mod, "version": ev.e.version}
	if ev.typ == "put" {
		valueFields(m, ev.e.value)
	}
	return m
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	prefix := q.Get("prefix") == "true"
	if !prefix && !validKey(w, key) {
		return
	}
	from, _, ok := intParam(w, r, "rev")
	if !ok {
		return
	}
	s.mu.Lock()
	s.watchRevs = append(s.watchRevs, from)
	switch {
	case from > s.rev+1:
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_argument", "rev "+strconv.FormatInt(from, 10)+" is in the future")
		return
	case from > 0 && from < s.oldest:
		oldest := s.oldest
		s.mu.Unlock()
		writeJSON(w, http.StatusGone, map[string]any{"error": "revision compacted", "code": "compacted", "oldest_revision": oldest})
		return
	}
	if from == 0 {
		from = s.rev + 1
	}
	rev, cut := s.rev, s.cutWatch
	s.mu.Unlock()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Cairn-Revision", strconv.FormatInt(rev, 10))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	flush := func() {
		_ = bw.Flush()
		w.(http.Flusher).Flush()
	}
	sent := 0 // index into s.events of the next event to consider
	tick := time.NewTicker(ProgressInterval)
	defer tick.Stop()
	for first := true; ; first = false {
		s.mu.Lock()
		for ; sent < len(s.events); sent++ {
			ev := &s.events[sent]
			if ev.e.mod >= from && (ev.key == key || (prefix && strings.HasPrefix(ev.key, key))) {
				_ = enc.Encode(ev.json())
			}
		}
		rev, changed := s.rev, s.changed
		s.mu.Unlock()
		if first {
			_ = enc.Encode(map[string]any{"type": "progress", "revision": rev})
		}
		flush()
		select {
		case <-r.Context().Done():
			return
		case <-cut:
			panic(http.ErrAbortHandler) // drop the connection mid-stream
		case <-changed:
		case <-tick.C:
			_ = enc.Encode(map[string]any{"type": "progress", "revision": rev})
		}
	}
}

// Wire forms of a transaction.
type (
	txnJSON struct {
		Compare []cmpJSON `json:"compare"`
		Success []opJSON  `json:"success"`
		Failure []opJSON  `json:"failure"`
	}
	cmpJSON struct {
		Key         string          `json:"key"`
		Target      string          `json:"target"`
		Op          string          `json:"op"`
		Value       json.RawMessage `json:"value"`
		ValueBase64 *string         `json:"value_base64"`
	}
	opJSON struct {
		Op          string  `json:"op"`
		Key         string  `json:"key"`
		Value       *string `json:"value"`
		ValueBase64 *string `json:"value_base64"`
		Prefix      bool    `json:"prefix"`
		TTL         string  `json:"ttl"`
		Limit       int64   `json:"limit"`
	}
)

func (s *Server) txn(w http.ResponseWriter, r *http.Request) {
	var t txnJSON
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_json", err.Error())
		return
	}
	if len(t.Compare) > maxTxnOps || len(t.Success) > maxTxnOps || len(t.Failure) > maxTxnOps {
		writeError(w, http.StatusBadRequest, "invalid_argument", "too many compares or operations")
		return
	}
	bad := func(msg string) { writeError(w, http.StatusBadRequest, "invalid_argument", msg) }
	for _, c := range t.Compare {
		if !validKey(w, c.Key) {
			return
		}
		switch c.Op {
		case "==", "!=", "<", ">":
		default:
			bad("bad compare op " + strconv.Quote(c.Op))
			return
		}
		switch c.Target {
		case "value", "mod_revision", "create_revision", "version", "exists":
		default:
			bad("bad compare target " + strconv.Quote(c.Target))
			return
		}
	}
	for _, o := range append(append([]opJSON{}, t.Success...), t.Failure...) {
		if o.Op != "get" && o.Op != "put" && o.Op != "delete" {
			bad("bad op " + strconv.Quote(o.Op))
			return
		}
		if !(o.Prefix && o.Key == "") && !validKey(w, o.Key) {
			return
		}
		if o.TTL != "" {
			if d, err := time.ParseDuration(o.TTL); err != nil || d < time.Second {
				bad("bad ttl " + strconv.Quote(o.TTL))
				return
			}
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replay(w, r) {
		return
	}
	ok := true
	for _, c := range t.Compare {
		ok = ok && s.compare(&c)
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	writes := false
	for _, o := range ops {
		writes = writes || o.Op != "get"
	}
	if writes {
		s.rev++
	}
	results := []map[string]any{}
	for _, o := range ops {
		res := map[string]any{"op": o.Op}
		switch o.Op {
		case "get":
			kvs := []map[string]any{}
			for _, k := range s.matching(o.Key, o.Prefix) {
				if o.Limit > 0 && int64(len(kvs)) >= o.Limit {
					break
				}
				e := s.kvs[k]
				m := map[string]any{"key": k, "create_revision": e.create, "mod_revision": e.mod, "version": e.version}
				valueFields(m, e.value)
				kvs = append(kvs, m)
			}
			res["kvs"] = kvs
		case "put":
			var v []byte
			if o.ValueBase64 != nil {
				v, _ = base64.StdEncoding.DecodeString(*o.ValueBase64)
			} else if o.Value != nil {
				v = []byte(*o.Value)
			}
			e := s.lookup(o.Key)
			if e == nil {
				e = &entry{create: s.rev}
				s.kvs[o.Key] = e
			}
			e.value, e.mod, e.expires = v, s.rev, time.Time{}
			e.version++
			if o.TTL != "" {
				d, _ := time.ParseDuration(o.TTL)
				e.expires = time.Now().Add(d)
			}
			s.record(event{typ: "put", key: o.Key, e: *e})
			res["revision"] = s.rev
		case "delete":
			victims := s.matching(o.Key, o.Prefix)
			for _, k := range victims {
				s.record(event{typ: "delete", key: k, e: entry{create: s.kvs[k].create, mod: s.rev}})
				delete(s.kvs, k)
			}
			res["deleted"] = len(victims)
		}
		results = append(results, res)
	}
	s.answer(w, r, http.StatusOK, map[string]any{"succeeded": ok, "revision": s.rev, "results": results})
}

// matching returns the live keys equal to key, or under it with prefix,
// in order. The caller holds s.mu.
func (s *Server) matching(key string, prefix bool) []string {
	var keys []string
	for k := range s.kvs {
		if (k == key || (prefix && strings.HasPrefix(k, key))) && s.lookup(k) != nil {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// compare evaluates one comparison. The caller holds s.mu.
func (s *Server) compare(c *cmpJSON) bool {
	e := s.lookup(c.Key)
	var cmp int
	switch c.Target {
	case "value":
		if e == nil {
			return c.Op == "!="
		}
		var want []byte
		if c.ValueBase64 != nil {
			want, _ = base64.StdEncoding.DecodeString(*c.ValueBase64)
		} else {
			var str string
			_ = json.Unmarshal(c.Value, &str)
			want = []byte(str)
		}
		cmp = bytes.Compare(e.value, want)
	case "exists":
		var want bool
		_ = json.Unmarshal(c.Value, &want)
		if (e != nil) == want {
			cmp = 0
		} else {
			cmp = 1
		}
	default:
		var want, have int64
		_ = json.Unmarshal(c.Value, &want)
		if e != nil {
			switch c.Target {
			case "mod_revision":
				have = e.mod
			case "create_revision":
				have = e.create
			case "version":
				have = e.version
			}
		}
		switch {
		case have < want:
			cmp = -1
		case have > want:
			cmp = 1
		}
	}
	switch c.Op {
	case "==":
		return cmp == 0
	case "!=":
		return cmp != 0
	case "<":
		return cmp < 0
	}
	return cmp > 0
}
