package client_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
)

// mustNewClient returns a client for endpoints with fast retries, closed
// when the test ends.
func mustNewClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	return mustNewClientConfig(t, client.Config{Endpoints: endpoints})
}

func mustNewClientConfig(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	if cfg.MaxRetryBackoff == 0 {
		cfg.MaxRetryBackoff = 5 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// deadAddr returns a local address nothing listens on, so connecting to it
// is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// recorder is a test server that answers with a fixed handler and records
// what it received.
type recorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
	bodies   []string
}

func (r *recorder) hits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

func (r *recorder) last() *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) == 0 {
		return nil
	}
	return r.requests[len(r.requests)-1]
}

func (r *recorder) idempotencyKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for _, req := range r.requests {
		keys = append(keys, req.Header.Get("Idempotency-Key"))
	}
	return keys
}

// newRecorder starts a server that records each request (reading its body
// first) and then runs h.
func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.requests = append(rec.requests, r.Clone(r.Context()))
		rec.bodies = append(rec.bodies, string(b))
		rec.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// addr returns the recorder's host:port.
func (r *recorder) addr() string { return strings.TrimPrefix(r.URL, "http://") }

// apiError returns a handler answering with the API's JSON error body.
func apiError(status int, code, msg string, extra ...any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		body := map[string]any{"error": msg, "code": code}
		for i := 0; i+1 < len(extra); i += 2 {
			body[extra[i].(string)] = extra[i+1]
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Cairn-Node", "n9")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
}

// okPut answers a PUT like the server does.
func okPut(rev int64) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Cairn-Node", "n2")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"revision": `+itoa(rev)+`}`)
	}
}

// okGet answers a GET with value and metadata headers.
func okGet(value string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("X-Cairn-Node", "n2")
		h.Set("X-Cairn-Revision", "42")
		h.Set("X-Cairn-Mod-Revision", "40")
		h.Set("X-Cairn-Create-Revision", "7")
		h.Set("X-Cairn-Version", "3")
		_, _ = io.WriteString(w, value)
	}
}

// resetConn answers nothing: it drops the connection after the request
// (body included) has been received.
func resetConn(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // send RST rather than FIN
	}
	_ = conn.Close()
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
