package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

// startIdleServer serves a trivial handler on 127.0.0.1 and opens a
// connection to it that never sends a request, as a Transport's spare
// connection does; it returns once the server has seen that connection.
func startIdleServer(t *testing.T, closeNew bool) *http.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				select {
				case seen <- struct{}{}:
				default:
				}
			}
		},
	}
	if closeNew {
		CloseNewConnsOnShutdown(srv)
	}
	go srv.Serve(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the connection")
	}
	return srv
}

// Without the hook a connection that never sent a request holds a
// shutdown up (net/http waits up to 5 s for it); with it, the shutdown
// closes it and returns at once.
func TestCloseNewConnsOnShutdown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := startIdleServer(t, false).Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("plain server: Shutdown = %v, want it to wait for the idle new connection", err)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	start := time.Now()
	if err := startIdleServer(t, true).Shutdown(ctx2); err != nil {
		t.Fatalf("with CloseNewConnsOnShutdown: Shutdown = %v after %v", err, time.Since(start))
	}
}
