package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/inproc"
)

// response is an HTTP answer read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// errorJSON is the body of every error answer.
type errorJSON struct {
	Error          string `json:"error"`
	Code           string `json:"code"`
	ModRevision    *int64 `json:"mod_revision"`
	OldestRevision *int64 `json:"oldest_revision"`
}

var testClient = &http.Client{Timeout: 30 * time.Second}

// call sends method to tn's HTTP API at target (an escaped path and query)
// with body (nil for none) and headers given as name, value pairs.
func call(t testing.TB, tn *inproc.Node, method, target string, body []byte, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return callReader(t, tn, method, target, rd, hdr...)
}

// callReader is call with any body reader; one without a known length is
// sent chunked.
func callReader(t testing.TB, tn *inproc.Node, method, target string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+tn.HTTPAddr+target, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, target, tn.ID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s on %s: read body: %v", method, target, tn.ID, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// decode parses the answer's JSON body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %d is not the JSON expected: %v: %q", r.Status, err, r.Body)
	}
}

// wantOK fails unless the answer is 200.
func (r response) wantOK(t testing.TB) response {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.Status, r.Body)
	}
	return r
}

// wantError fails unless the answer is status with a JSON error of code.
func (r response) wantError(t testing.TB, status int, code string) errorJSON {
	t.Helper()
	var e errorJSON
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s): %s", r.Status, status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	r.decode(t, &e)
	if e.Code != code || e.Error == "" {
		t.Fatalf("error body %s, want code %q and a message", r.Body, code)
	}
	return e
}

// revisionHeader returns X-Cairn-Revision, failing if it is missing.
func (r response) revisionHeader(t testing.TB) int64 {
	t.Helper()
	v, err := strconv.ParseInt(r.Header.Get("X-Cairn-Revision"), 10, 64)
	if err != nil {
		t.Fatalf("X-Cairn-Revision %q: %v", r.Header.Get("X-Cairn-Revision"), err)
	}
	return v
}

// kvPath is the escaped path of key.
func kvPath(key string) string {
	return "/v1/kv/" + (&url.URL{Path: key}).EscapedPath()
}
