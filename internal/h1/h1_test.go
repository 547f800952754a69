package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// childServerEnv, when set, makes the test binary a plain net/http server
// (see TestMain): the benchmarks run it in a process of its own, so that
// this process's CPU time is the client's alone.
const childServerEnv = "H1_TEST_CHILD_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(childServerEnv) != "" {
		childServer()
		return
	}
	os.Exit(m.Run())
}

// childServer serves value256 on 127.0.0.1, prints its address and exits
// when its standard input closes.
func childServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	_ = http.Serve(ln, valueHandler())
}

var value256 = bytes.Repeat([]byte("v"), 256)

// valueHandler answers every request with value256.
func valueHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "256")
		_, _ = w.Write(value256)
	})
}

// server is an httptest server that counts the connections made to it.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

func newServer(t testing.TB, h http.Handler) *server {
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *server) addr() string { return s.Listener.Addr().String() }

// newConn returns a Conn to addr, closed when the test ends.
func newConn(t testing.TB, addr string) *Conn {
	c := New(addr, time.Second)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testCtx bounds every request of a test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func do(t *testing.T, c *Conn, method, path string, body []byte) (int, string) {
	t.Helper()
	status, resp, err := c.Do(testCtx(t), method, path, body, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, string(resp)
}

func TestGet(t *testing.T) {
	var host, length string
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, length = r.Host, r.Header.Get("Content-Length")
		if r.Method != http.MethodGet || r.URL.Path != "/v1/kv/a" || r.URL.RawQuery != "consistency=stale" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", "5")
		_, _ = w.Write([]byte("hello"))
	}))
	c := newConn(t, s.addr())
	buf := make([]byte, 0, 64)
	status, body, err := c.Do(testCtx(t), "GET", "/v1/kv/a?consistency=stale", nil, buf)
	if err != nil || status != 200 || string(body) != "hello" {
		t.Fatalf("GET: %d %q %v", status, body, err)
	}
	if &body[0] != &buf[:1][0] {
		t.Error("the body was not read into dst")
	}
	if host != s.addr() || length != "" {
		t.Errorf("request had Host %q and Content-Length %q", host, length)
	}
	if status, body := do(t, c, "GET", "/elsewhere", nil); status != 400 || body != "" {
		t.Errorf("GET /elsewhere: %d %q", status, body)
	}
}

func TestPutEcho(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil || r.Method != http.MethodPut || r.URL.Path != "/v1/kv/bench/000001" ||
			r.ContentLength != int64(len(b)) || r.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
			http.Error(w, fmt.Sprintf("%s %s length %d body %d %v", r.Method, r.URL, r.ContentLength, len(b), err), http.StatusBadRequest)
			return
		}
		_, _ = w.Write(b)
	}))
	c := newConn(t, s.addr())
	for _, n := range []int{1, 100, 20 << 10, 1 << 20} { // smaller and larger than the read buffer
		value := bytes.Repeat([]byte{'x'}, n)
		status, body := do(t, c, "PUT", "/v1/kv/bench/000001", value)
		if status != 200 || body != string(value) {
			t.Fatalf("PUT of %d bytes: %d, %d bytes back: %.100s", n, status, len(body), body)
		}
	}
	if status, body := do(t, c, "PUT", "/v1/kv/bench/000001", nil); status != 200 || body != "" {
		t.Fatalf("empty PUT: %d %q", status, body)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// rawServer accepts connections on 127.0.0.1 and hands each to serve, in
// a goroutine of its own.
func rawServer(t testing.TB, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				defer nc.Close()
				serve(nc)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// readRequestHeader reads a request up to the end of its header section
// and returns it.
func readRequestHeader(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" {
			return b.String(), nil
		}
	}
}

// answer reads one request (without a body) and writes resp.
func answer(nc net.Conn, resp string) {
	br := bufio.NewReader(nc)
	if _, err := readRequestHeader(br); err == nil {
		_, _ = io.WriteString(nc, resp)
	}
}

func TestRequestBytes(t *testing.T) {
	got := make(chan string, 10)
	addr := rawServer(t, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		for {
			req, err := readRequestHeader(br)
			if err != nil {
				return
			}
			if i := strings.Index(req, "Content-Length: "); i >= 0 {
				n, _ := strconv.Atoi(req[i+16 : i+strings.Index(req[i:], "\r")])
				body := make([]byte, n)
				_, _ = io.ReadFull(br, body)
				req += string(body)
			}
			got <- req
			_, _ = io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	c := newConn(t, addr)
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{"GET", "/v1/kv/a", "", "GET /v1/kv/a HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
		{"PUT", "/v1/kv/a", "", "PUT /v1/kv/a HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 0\r\n\r\n"},
		{"POST", "/p?q=1", "abc", "POST /p?q=1 HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 3\r\n\r\nabc"},
		{"DELETE", "/d", "", "DELETE /d HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"},
	} {
		if status, _ := do(t, c, tc.method, tc.path, []byte(tc.body)); status != 200 {
			t.Errorf("%s: status %d", tc.method, status)
		}
		if req := <-got; req != tc.want {
			t.Errorf("%s sent %q, want %q", tc.method, req, tc.want)
		}
	}
	for _, bad := range [][2]string{{"GET", "/a b"}, {"GET", "/a\r\nX: y"}, {"GET", ""}, {"G T", "/"}, {"", "/"}} {
		if _, _, err := c.Do(testCtx(t), bad[0], bad[1], nil, nil); err == nil {
			t.Errorf("%q %q: no error", bad[0], bad[1])
		}
	}
}

func TestChunked(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for _, part := range []string{"one,", strings.Repeat("two,", 5000), "three"} {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	c := newConn(t, s.addr())
	want := "one," + strings.Repeat("two,", 5000) + "three"
	for range 3 {
		if status, body := do(t, c, "GET", "/", nil); status != 200 || body != want {
			t.Fatalf("chunked GET: %d, %d bytes, want %d", status, len(body), len(want))
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestChunkedRaw(t *testing.T) {
	// Extensions, upper-case hex, trailers.
	addr := rawServer(t, func(nc net.Conn) {
		answer(nc, "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"+
			"A;name=value\r\n0123456789\r\n1 \r\n!\r\n0\r\nTrailer: x\r\n\r\n")
	})
	c := newConn(t, addr)
	if status, body := do(t, c, "GET", "/", nil); status != 200 || body != "0123456789!" {
		t.Fatalf("GET: %d %q", status, body)
	}
}

func TestNoBody(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "1000")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/100":
			// An interim response before the final one.
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "after hints")
		default:
			_, _ = io.WriteString(w, "body")
		}
	}))
	c := newConn(t, s.addr())
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"HEAD", "/head", 200, ""},
		{"GET", "/", 200, "body"},
		{"GET", "/204", 204, ""},
		{"GET", "/", 200, "body"},
		{"GET", "/304", 304, ""},
		{"GET", "/100", 200, "after hints"},
		{"GET", "/", 200, "body"},
	} {
		if status, body := do(t, c, tc.method, tc.path, nil); status != tc.status || body != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, status, body, tc.status, tc.body)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestKeepAlive(t *testing.T) {
	s := newServer(t, valueHandler())
	c := newConn(t, s.addr())
	var body []byte
	var err error
	var status int
	for i := range 100 {
		if status, body, err = c.Do(testCtx(t), "GET", "/v1/kv/k", nil, body); err != nil || status != 200 || !bytes.Equal(body, value256) {
			t.Fatalf("request %d: %d %q %v", i, status, body, err)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("100 requests used %d connections, want 1", n)
	}
}

func TestServerConnectionClose(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	c := newConn(t, s.addr())
	for _, p := range []string{"/a", "/close", "/b", "/c", "/close", "/d"} {
		if status, body := do(t, c, "GET", p, nil); status != 200 || body != p {
			t.Fatalf("GET %s: %d %q", p, status, body)
		}
	}
	if n := s.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestHTTP10(t *testing.T) {
	// Without a length or keep-alive, the body lasts until the server
	// closes; then Do dials again.
	var conns atomic.Int64
	addr := rawServer(t, func(nc net.Conn) {
		if conns.Add(1) == 1 {
			answer(nc, "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nka")
			answer(nc, "HTTP/1.0 200 OK\r\n\r\nuntil close")
		} else {
			answer(nc, "HTTP/1.1 200 OK\r\n\r\nalso until close")
		}
	})
	c := newConn(t, addr)
	for _, want := range []string{"ka", "until close", "also until close"} {
		if status, body := do(t, c, "GET", "/", nil); status != 200 || body != want {
			t.Fatalf("GET: %d %q, want %q", status, body, want)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestServerClosedIdleConn(t *testing.T) {
	var handled atomic.Int64
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		_, _ = io.Copy(w, r.Body)
	}))
	c := newConn(t, s.addr())
	do(t, c, "GET", "/", nil)
	for i, method := range []string{"GET", "PUT", "HEAD", "DELETE"} {
		s.CloseClientConnections()
		// Give the close time to reach the client's socket, as it would
		// have for an idle connection.
		time.Sleep(10 * time.Millisecond)
		if status, _ := do(t, c, method, "/", []byte("x")); status != 200 {
			t.Fatalf("%s after the server closed: %d", method, status)
		}
		if n := s.conns.Load(); n != int64(i+2) {
			t.Fatalf("%d connections after %d closes", n, i+1)
		}
	}
	if n := handled.Load(); n != 5 {
		t.Errorf("handler ran %d times, want 5", n)
	}
	// POST is not idempotent: not retried.
	s.CloseClientConnections()
	time.Sleep(10 * time.Millisecond)
	if _, _, err := c.Do(testCtx(t), "POST", "/", []byte("x"), nil); err == nil || !strings.Contains(err.Error(), s.addr()) {
		t.Fatalf("POST on a closed connection: %v, want an error naming %s", err, s.addr())
	}
	if status, _ := do(t, c, "POST", "/", []byte("x")); status != 200 {
		t.Fatalf("POST after the error: %d", status)
	}
}

func TestNoRetryOnFreshConnOrAfterResponseBytes(t *testing.T) {
	var conns atomic.Int64
	addr := rawServer(t, func(nc net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(nc)
		if _, err := readRequestHeader(br); err == nil {
			_, _ = io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
		}
	})
	c := newConn(t, addr)
	_, _, err := c.Do(testCtx(t), "GET", "/", nil, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), addr) {
		t.Errorf("truncated body: %v", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (no retry)", n)
	}

	// A server that closes a fresh connection without answering.
	addr = rawServer(t, func(nc net.Conn) { conns.Add(1) })
	c = newConn(t, addr)
	conns.Store(0)
	if _, _, err := c.Do(testCtx(t), "GET", "/", nil, nil); err == nil {
		t.Error("no error from a server that closed without answering")
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (no retry)", n)
	}
}

func TestDeadline(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	c := newConn(t, s.addr())
	do(t, c, "GET", "/", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := c.Do(ctx, "GET", "/slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), s.addr()) {
		t.Fatalf("slow GET: %v, want a deadline error naming %s", err, s.addr())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("slow GET failed after %v", d)
	}
	// No deadline now: it must have been cleared.
	if status, body := do(t, c, "GET", "/", nil); status != 200 || body != "ok" {
		t.Fatalf("GET after the deadline: %d %q", status, body)
	}
	if status, body, err := c.Do(context.Background(), "GET", "/", nil, nil); err != nil || status != 200 || string(body) != "ok" {
		t.Fatalf("GET without a deadline: %d %q %v", status, body, err)
	}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	before := s.conns.Load()
	if _, _, err := c.Do(canceled, "GET", "/", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	if status, _ := do(t, c, "GET", "/", nil); status != 200 || s.conns.Load() != before {
		t.Errorf("GET after a canceled one: %d, %d new connections", status, s.conns.Load()-before)
	}
}

func TestBadResponses(t *testing.T) {
	big := strings.Repeat("a", MaxHeaderBytes)
	for _, tc := range []struct {
		name, resp, want string
	}{
		{"garbage", "garbage\r\n\r\n", "malformed status line"},
		{"http2", "HTTP/2 200\r\n\r\n", "malformed status line"},
		{"status", "HTTP/1.1 2x0 OK\r\n\r\n", "malformed status code"},
		{"header line", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed header"},
		{"folding", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "folding"},
		{"long header", "HTTP/1.1 200 OK\r\nX: " + big + "\r\n\r\n", "header section larger"},
		{"many headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", MaxHeaderBytes/6) + "\r\n", "header section larger"},
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"},
		{"lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "conflicting"},
		{"huge body", "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", "body larger"},
		{"huge chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000\r\n", "body larger"},
		{"te and length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", "both"},
		{"chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk"},
		{"chunk end", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "CRLF"},
		{"switching", "HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"},
		{"truncated header", "HTTP/1.1 200 OK\r\nContent-Le", "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, func(nc net.Conn) { answer(nc, tc.resp) })
			c := newConn(t, addr)
			_, _, err := c.Do(testCtx(t), "GET", "/", nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), addr) {
				t.Errorf("err %v, want one with %q and %s", err, tc.want, addr)
			}
		})
	}
}

func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Dial(addr, time.Second); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Dial of a closed port: %v", err)
	}
	c := newConn(t, addr)
	if _, _, err := c.Do(testCtx(t), "GET", "/", nil, nil); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Do on a closed port: %v", err)
	}
}

// fixedServer answers every request (which must have no body) on a
// connection with resp, without allocating.
func fixedServer(t testing.TB, resp []byte) string {
	return rawServer(t, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := nc.Write(resp); err != nil {
				return
			}
		}
	})
}

var fixed256 = append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 256\r\n\r\n"), value256...)

func TestAllocs(t *testing.T) {
	// The server must not allocate either: AllocsPerRun counts the
	// whole process's allocations.
	c := newConn(t, fixedServer(t, fixed256))
	ctx := context.Background()
	var body []byte
	var err error
	get := func() {
		var status int
		if status, body, err = c.Do(ctx, "GET", "/v1/kv/bench/000042", nil, body); err != nil || status != 200 || len(body) != 256 {
			t.Fatalf("GET: %d %d bytes %v", status, len(body), err)
		}
	}
	if n := testing.AllocsPerRun(200, get); n > 0 {
		t.Errorf("%v allocations per GET, want 0", n)
	}
	// With a deadline per request, as a benchmark driver sets them.
	ctxs := make([]context.Context, 300) // AllocsPerRun makes one more run, to warm up
	for i := range ctxs {
		var cancel context.CancelFunc
		ctxs[i], cancel = context.WithTimeout(context.Background(), time.Minute+time.Duration(i))
		t.Cleanup(cancel)
	}
	i := 0
	if n := testing.AllocsPerRun(200, func() {
		ctx = ctxs[i]
		i++
		get()
	}); n > 0 {
		t.Errorf("%v allocations per GET with a new deadline, want 0", n)
	}
}

// getrusageCPU returns the CPU time this process has used.
func getrusageCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchServers runs bench against each server: an httptest server in this
// process, and a net/http server in a child process, where this process's
// CPU time is the client's alone (reported as client-ns/op).
func benchServers(b *testing.B, bench func(b *testing.B, addr string)) {
	b.Run("server=inproc", func(b *testing.B) {
		bench(b, newServer(b, valueHandler()).addr())
	})
	b.Run("server=child", func(b *testing.B) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childServerEnv+"=1")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			stdin.Close()
			_ = cmd.Wait()
		}()
		addr, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		bench(b, strings.TrimSpace(addr))
	})
}

func BenchmarkGet256(b *testing.B) {
	benchServers(b, func(b *testing.B, addr string) {
		c := newConn(b, addr)
		var body []byte
		b.ReportAllocs()
		cpu := getrusageCPU(b)
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			status, resp, err := c.Do(ctx, "GET", "/v1/kv/bench/000042", nil, body)
			cancel()
			if err != nil || status != 200 || len(resp) != 256 {
				b.Fatalf("GET: %d %d bytes %v", status, len(resp), err)
			}
			body = resp
		}
		b.ReportMetric(float64(getrusageCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
	})
}

func BenchmarkNetHTTPGet256(b *testing.B) {
	benchServers(b, func(b *testing.B, addr string) {
		hc := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}}
		defer hc.CloseIdleConnections()
		url := "http://" + addr + "/v1/kv/bench/000042"
		buf := make([]byte, 32<<10)
		b.ReportAllocs()
		cpu := getrusageCPU(b)
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
			cancel()
			if err != nil || resp.StatusCode != 200 || n != 256 {
				b.Fatalf("GET: %d %d bytes %v", resp.StatusCode, n, err)
			}
		}
		b.ReportMetric(float64(getrusageCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
	})
}

func TestLongHeaderLine(t *testing.T) {
	// Longer than the read buffer, shorter than MaxHeaderBytes.
	long := strings.Repeat("l", 3*readBufferSize)
	addr := rawServer(t, func(nc net.Conn) {
		answer(nc, "HTTP/1.1 200 OK\r\nX-Long: "+long+"\r\nContent-Length: 2\r\n\r\nok")
	})
	c, err := Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Addr() != addr {
		t.Errorf("Addr() = %q, want %q", c.Addr(), addr)
	}
	if status, body := do(t, c, "GET", "/", nil); status != 200 || body != "ok" {
		t.Fatalf("GET: %d %q", status, body)
	}
}
