package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/httpapi"
	"github.com/cairn-kv/cairn/tests/inproc"
)

// FuzzHandler sends arbitrary requests to a one-node cluster's handler and
// checks the contract every answer keeps: never a 500 for user input, and
// every error a JSON body with "error" and "code". Inputs that wait (a far
// min_revision, a watch) take up to the request timeout, which makes
// minimizing slow; fuzz with
//
//	go test -run '^$' -fuzz FuzzHandler -fuzzminimizetime 0 ./httpapi/
func FuzzHandler(f *testing.F) {
	seeds := []struct {
		method, path, query string
		body                string
	}{
		{"PUT", "/v1/kv/a", "", "v"},
		{"PUT", "/v1/kv/a/b//c", "ttl=30s", "v"},
		{"PUT", "/v1/kv/a", "cas=0", ""},
		{"PUT", "/v1/kv/a", "cas=1&ttl=1s", "\xff\x00"},
		{"PUT", "/v1/kv/a", "cas=%zz", "v"},
		{"PUT", "/v1/kv/a", "cas=1;ttl=2s", "v"},
		{"PUT", "/v1/kv/a", "ttl=99999999h", "v"},
		{"PUT", "/v1/kv/", "", "v"},
		{"PUT", "/v1/kv/a\x00b", "", "v"},
		{"PUT", "/v1/kv/\xff", "", "v"},
		{"PUT", "/v1/kv/" + strings.Repeat("k", 1025), "", "v"},
		{"GET", "/v1/kv/a", "", ""},
		{"GET", "/v1/kv/a", "consistency=leader", ""},
		{"GET", "/v1/kv/a", "consistency=stale&min_revision=1", ""},
		{"GET", "/v1/kv/a", "consistency=bogus", ""},
		{"GET", "/v1/kv/a", "min_revision=-3", ""},
		{"HEAD", "/v1/kv/a", "", ""},
		{"HEAD", "/v1/kv/missing", "", ""},
		{"GET", "/v1/kv/", "prefix=a&limit=2&after=a&keys=true", ""},
		{"GET", "/v1/kv/", "limit=-1", ""},
		{"GET", "/v1/kv/", "limit=99999999999999999999999", ""},
		{"GET", "/v1/kv/", "prefix=%FF", ""},
		{"DELETE", "/v1/kv/a", "cas=5", ""},
		{"DELETE", "/v1/kv/a", "prefix=true&cas=1", ""},
		{"DELETE", "/v1/kv/zz/", "prefix=true", ""},
		{"DELETE", "/v1/kv/", "prefix=1", ""},
		{"POST", "/v1/kv/a", "", "v"},
		{"POST", "/v1/txn", "", `{"compare":[{"key":"a","target":"mod_revision","op":"==","value":1}],"success":[{"op":"put","key":"a","value":"t"}],"failure":[{"op":"get","key":"a"}]}`},
		{"POST", "/v1/txn", "", `{"compare":[{"key":"a","target":"value","op":"<","value_base64":"AAE="}],"success":[{"op":"delete","key":"a","prefix":true}]}`},
		{"POST", "/v1/txn", "", `{"success":[{"op":"get","key":"","prefix":true,"limit":-1}]}`},
		{"POST", "/v1/txn", "", `{"success":[{"op":"put","key":"a","value":"x","ttl":"2562047h"}]}`},
		{"POST", "/v1/txn", "", `{"compare":[{"key":"a","target":"exists","op":">","value":"yes"}]}`},
		{"POST", "/v1/txn", "", `{"success":[{"op":"put","key":"a","value_base64":"!!"}]}`},
		{"POST", "/v1/txn", "", `{"success":`},
		{"POST", "/v1/txn", "", `null`},
		{"GET", "/v1/watch/a", "rev=-1", ""},
		{"GET", "/v1/watch/\xff", "", ""},
		{"GET", "/v1/watch/a", "prefix=true&rev=1", ""},
		{"GET", "/v1/status", "", ""},
		{"GET", "/v1/status", "hash=true", ""},
		{"GET", "/v1/cluster/members", "", ""},
		{"POST", "/v1/cluster/members", "", `{"id":`},
		{"POST", "/v1/cluster/members", "", `{"id":"x","raft_addr":"y","http_addr":"z","extra":1}`},
		{"POST", "/v1/cluster/members", "", `{"id":"x"}`},
		{"DELETE", "/v1/cluster/members/nobody", "", ""},
		{"DELETE", "/v1/cluster/members/", "", ""},
		{"GET", "/v1/internal/read-index", "", ""},
		{"POST", "/v1/internal/read-index", "", ""},
		{"POST", "/v1/internal/apply", "", "\x01\x05\x01\x01\x00\x00\x00"},
		{"POST", "/v1/internal/apply", "", "garbage"},
		{"GET", "/healthz", "", ""},
		{"GET", "/readyz", "", ""},
		{"GET", "/metrics", "", ""},
		{"GET", "/v1/snapshot", "", ""},
		{"OPTIONS", "/", "", ""},
		{"BREW", "/v1/kv/a", "", ""},
		{"GET", "/v1/kv", "", ""},
		{"GET", "../../etc/passwd", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, []byte(s.body))
	}

	c := inproc.Start(f, 1, inproc.Options{})
	n := c.Nodes[0]
	// A handler of its own with short waits, so that inputs that wait
	// (min_revision far ahead, watches) end quickly.
	h, err := httpapi.New(httpapi.Config{RequestTimeout: 500 * time.Millisecond, LeaderWait: 300 * time.Millisecond, Logger: c.Log}, n.Raft, n.Store)
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, method, path, query string, body []byte) {
		if method == "" {
			method = "GET"
		}
		if !validMethod(method) {
			return // no server passes such a request line on
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		if changesMembership(method, path, body, n.ID) {
			return // a valid join or removal would change the cluster under test
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		req := (&http.Request{
			Method:        method,
			URL:           &url.URL{Path: path, RawQuery: query},
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{},
			Host:          n.HTTPAddr,
			RemoteAddr:    "127.0.0.1:1234",
			Body:          http.NoBody,
			ContentLength: int64(len(body)),
		}).WithContext(ctx)
		if len(body) > 0 {
			req.Body = httpNopCloser{bytes.NewReader(body)}
		}
		req.RequestURI = req.URL.RequestURI()

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode == http.StatusInternalServerError || res.StatusCode == http.StatusNotImplemented {
			t.Fatalf("%s %q ?%q (%d-byte body): %d %s", method, path, query, len(body), res.StatusCode, rec.Body.Bytes())
		}
		if res.StatusCode >= 200 && res.StatusCode < 300 || method == http.MethodHead {
			return
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %q ?%q: error %d with Content-Type %q: %q", method, path, query, res.StatusCode, ct, rec.Body.Bytes())
		}
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Code == "" {
			t.Fatalf("%s %q ?%q: error %d body %q is not {error, code} (%v)", method, path, query, res.StatusCode, rec.Body.Bytes(), err)
		}
	})
}

type httpNopCloser struct{ *bytes.Reader }

func (httpNopCloser) Close() error { return nil }

// validMethod reports whether m is an HTTP token, as net/http requires of
// the method in a request line.
func validMethod(m string) bool {
	for _, r := range m {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return false
		}
	}
	return m != ""
}

// changesMembership reports whether the request is a join the server
// would accept or the removal of the node itself.
func changesMembership(method, path string, body []byte, self string) bool {
	switch {
	case method == http.MethodPost && path == "/v1/cluster/members":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var m struct {
			ID       string `json:"id"`
			RaftAddr string `json:"raft_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		return dec.Decode(&m) == nil && m.ID != "" && m.RaftAddr != "" && m.HTTPAddr != ""
	case method == http.MethodDelete && strings.HasPrefix(path, "/v1/cluster/members/"):
		return strings.TrimPrefix(path, "/v1/cluster/members/") == self
	}
	return false
}
