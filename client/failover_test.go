package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/client/clienttest"
)

func TestReadSkipsDeadEndpoint(t *testing.T) {
	good := newRecorder(t, okGet("v"))
	c := mustNewClient(t, deadAddr(t), good.URL)
	resp, err := c.Get(context.Background(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(resp.Value) != "v" || resp.Endpoint != good.URL {
		t.Errorf("Get = %q from %s, want \"v\" from %s", resp.Value, resp.Endpoint, good.URL)
	}
}

func TestRemembersWorkingEndpoint(t *testing.T) {
	down := newRecorder(t, apiError(503, "no_leader", "no leader"))
	good := newRecorder(t, okGet("v"))
	c := mustNewClient(t, down.URL, good.URL)
	for i := range 3 {
		if _, err := c.Get(context.Background(), "k"); err != nil {
			t.Fatalf("Get %d: %v", i, err)
		}
	}
	if down.hits() != 1 || good.hits() != 3 {
		t.Errorf("hits: down %d, good %d; want 1 and 3 (the working endpoint is preferred)", down.hits(), good.hits())
	}
}

// An endpoint that answers with a non-retryable error (here 404) is
// healthy and stays preferred.
func TestPreferredEndpointSurvivesNonRetryableErrors(t *testing.T) {
	a := newRecorder(t, apiError(404, "key_not_found", "nope"))
	b := newRecorder(t, apiError(404, "key_not_found", "nope"))
	c := mustNewClient(t, deadAddr(t), b.URL, a.URL)
	for range 3 {
		if _, err := c.Get(context.Background(), "k"); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("Get: %v, want ErrNotFound", err)
		}
	}
	if b.hits() != 3 || a.hits() != 0 {
		t.Errorf("hits b=%d a=%d, want 3 and 0", b.hits(), a.hits())
	}
}

func TestWriteNotRetriedAfterConnectionReset(t *testing.T) {
	reset := newRecorder(t, resetConn)
	good := newRecorder(t, okPut(5))
	c := mustNewClient(t, reset.URL, good.URL)
	_, err := c.Put(context.Background(), "k", []byte("v"))
	if err == nil {
		t.Fatal("Put succeeded; a write that reached a server and lost its answer must not be retried")
	}
	if reset.hits() != 1 || good.hits() != 0 {
		t.Errorf("hits: reset %d, good %d; want 1 and 0", reset.hits(), good.hits())
	}
	t.Logf("error: %v", err)
}

func TestWriteRetriedAfterConnectionResetWithIdempotencyKey(t *testing.T) {
	reset := newRecorder(t, resetConn)
	good := newRecorder(t, okPut(5))
	c := mustNewClient(t, reset.URL, good.URL)
	resp, err := c.Put(context.Background(), "k", []byte("v"), client.WithIdempotencyKey("op-1"))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if resp.Revision != 5 || resp.Endpoint != good.URL {
		t.Errorf("Put = %+v", resp.Meta)
	}
	keys := append(reset.idempotencyKeys(), good.idempotencyKeys()...)
	if len(keys) != 2 || keys[0] != "op-1" || keys[1] != "op-1" {
		t.Errorf("Idempotency-Key headers = %q, want op-1 twice", keys)
	}
	if good.bodies[0] != "v" {
		t.Errorf("retried body = %q, want \"v\"", good.bodies[0])
	}
}

func TestWriteRetriedOnConnectionRefused(t *testing.T) {
	good := newRecorder(t, okPut(5))
	c := mustNewClient(t, deadAddr(t), good.URL)
	if _, err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if good.hits() != 1 || good.idempotencyKeys()[0] == "" {
		t.Errorf("good got %d requests, keys %q; want 1 with an Idempotency-Key", good.hits(), good.idempotencyKeys())
	}
}

func TestWriteRetriedOnNoLeaderWithSameKey(t *testing.T) {
	for _, code := range []string{"no_leader", "not_ready"} {
		t.Run(code, func(t *testing.T) {
			down := newRecorder(t, apiError(503, code, "try later"))
			good := newRecorder(t, okPut(9))
			c := mustNewClient(t, down.URL, good.URL)
			for _, call := range []func() error{
				func() error { _, err := c.Put(context.Background(), "k", []byte("v")); return err },
				func() error { _, err := c.Delete(context.Background(), "k"); return err },
			} {
				if err := call(); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			// The first write failed over; the second went to the good node.
			if down.hits() != 1 || good.hits() != 2 {
				t.Fatalf("hits: down %d, good %d; want 1 and 2", down.hits(), good.hits())
			}
			dk, gk := down.idempotencyKeys(), good.idempotencyKeys()
			if dk[0] == "" || dk[0] != gk[0] {
				t.Errorf("attempts of one write carried keys %q and %q, want the same non-empty key", dk[0], gk[0])
			}
			if gk[0] == gk[1] {
				t.Errorf("two writes shared Idempotency-Key %q", gk[0])
			}
		})
	}
}

func TestWriteNotRetriedOnUnknownOutcome(t *testing.T) {
	for _, h := range []struct {
		name string
		h    http.HandlerFunc
		want error
	}{
		{"504 timeout", apiError(504, "timeout", "apply timed out"), client.ErrTimeout},
		{"503 other", apiError(503, "overloaded", "busy"), nil},
		{"502", apiError(502, "", "bad gateway"), nil},
	} {
		t.Run(h.name, func(t *testing.T) {
			bad := newRecorder(t, h.h)
			good := newRecorder(t, okPut(5))
			c := mustNewClient(t, bad.URL, good.URL)
			_, err := c.Put(context.Background(), "k", []byte("v"))
			if err == nil || (h.want != nil && !errors.Is(err, h.want)) {
				t.Fatalf("Put: %v, want an error matching %v", err, h.want)
			}
			if good.hits() != 0 {
				t.Errorf("write retried after an unknown outcome")
			}
			// With an idempotency key it is safe to retry.
			if _, err := c.Put(context.Background(), "k", []byte("v"), client.WithIdempotencyKey("x")); err != nil {
				t.Errorf("Put with idempotency key: %v", err)
			}
		})
	}
}

func TestReadRetriedAfterConnectionReset(t *testing.T) {
	reset := newRecorder(t, resetConn)
	good := newRecorder(t, okGet("v"))
	c := mustNewClient(t, reset.URL, good.URL)
	resp, err := c.Get(context.Background(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(resp.Value) != "v" || reset.hits() != 1 {
		t.Errorf("Get = %q, reset hits %d", resp.Value, reset.hits())
	}
}

func TestReadRetriedOnSameEndpoint(t *testing.T) {
	var n atomic.Int32
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			apiError(503, "no_leader", "election")(w, r)
		case 2:
			apiError(504, "timeout", "slow")(w, r)
		default:
			okGet("v")(w, r)
		}
	})
	c := mustNewClient(t, srv.URL)
	if _, err := c.Get(context.Background(), "k"); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if srv.hits() != 3 {
		t.Errorf("hits = %d, want 3", srv.hits())
	}
}

func TestReadFailsOverAfterAttemptTimeout(t *testing.T) {
	hang := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	good := newRecorder(t, okGet("v"))
	c := mustNewClientConfig(t, client.Config{Endpoints: []string{hang.URL, good.URL}, Timeout: 100 * time.Millisecond})
	resp, err := c.Get(context.Background(), "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if resp.Endpoint != good.URL {
		t.Errorf("served by %s, want %s", resp.Endpoint, good.URL)
	}
}

func TestMaxRetries(t *testing.T) {
	for _, tt := range []struct{ maxRetries, hits int }{{-1, 1}, {2, 3}, {0, 1 + client.DefaultMaxRetries}} {
		srv := newRecorder(t, apiError(503, "no_leader", "no leader"))
		c := mustNewClientConfig(t, client.Config{Endpoints: []string{srv.URL}, MaxRetries: tt.maxRetries})
		_, err := c.Get(context.Background(), "k")
		if !errors.Is(err, client.ErrNoLeader) {
			t.Errorf("MaxRetries %d: %v, want ErrNoLeader", tt.maxRetries, err)
		}
		if srv.hits() != tt.hits {
			t.Errorf("MaxRetries %d: %d attempts, want %d", tt.maxRetries, srv.hits(), tt.hits)
		}
	}
}

func TestRetriesStopAtContextDeadline(t *testing.T) {
	srv := newRecorder(t, apiError(503, "no_leader", "no leader"))
	c := mustNewClientConfig(t, client.Config{
		Endpoints: []string{srv.URL}, MaxRetries: 1 << 20,
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "k")
	if !errors.Is(err, client.ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get: %v, want both ErrNoLeader and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Get took %v, want about 150ms", d)
	}
	if srv.hits() < 3 {
		t.Errorf("only %d attempts within the deadline", srv.hits())
	}
}

// A deadline that interrupts a retry in flight still reports why the call
// was retrying.
func TestDeadlineDuringRetryKeepsCause(t *testing.T) {
	var n atomic.Int32
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			apiError(503, "not_ready", "catching up")(w, r)
			return
		}
		<-r.Context().Done()
	})
	c := mustNewClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "k")
	if !errors.Is(err, client.ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get: %v, want both ErrNotReady and DeadlineExceeded", err)
	}
}

func TestCanceledContext(t *testing.T) {
	srv := newRecorder(t, okGet("v"))
	c := mustNewClient(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v, want context.Canceled", err)
	}
	if srv.hits() != 0 {
		t.Errorf("canceled call reached the server")
	}
}

func TestAllEndpointsDown(t *testing.T) {
	c := mustNewClientConfig(t, client.Config{Endpoints: []string{deadAddr(t), deadAddr(t)}, MaxRetries: 3})
	_, err := c.Put(context.Background(), "k", []byte("v"))
	if err == nil {
		t.Fatal("Put succeeded with every endpoint down")
	}
	t.Logf("error: %v", err)
}

func TestConnectionsReused(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, fake.Addr())
	ctx := context.Background()
	for i := range 20 {
		if _, err := c.Put(ctx, "k", []byte("some value")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "missing"); !errors.Is(err, client.ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, "k", []byte("x"), client.WithCAS(int64(1000+i))); !errors.Is(err, client.ErrConflict) {
			t.Fatal(err)
		}
		if _, err := c.List(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.Connections(); n != 1 {
		t.Errorf("%d connections opened for 100 sequential calls, want 1", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	fake := clienttest.NewServer(t)
	c := mustNewClient(t, deadAddr(t), fake.Addr())
	ctx := context.Background()
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				key := "g" + itoa(int64(g)) + "/" + itoa(int64(i))
				if _, err = c.Put(ctx, key, []byte(key)); err == nil {
					var r *client.GetResponse
					if r, err = c.Get(ctx, key); err == nil && string(r.Value) != key {
						err = errors.New("wrong value for " + key)
					}
				}
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := fake.Revision(); got != 16*20 {
		t.Errorf("revision %d after %d puts", got, 16*20)
	}
}

func TestClose(t *testing.T) {
	srv := newRecorder(t, okGet("v"))
	c := mustNewClient(t, srv.URL)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
}
