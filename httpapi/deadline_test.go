package httpapi

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"
)

// TestDeadlinesShareWindows: requests starting within one window share a
// deadline context; every deadline lies between the timeout and the
// timeout plus one window after the request's start; a later start gets a
// new window; all of them end with the parent.
func TestDeadlinesShareWindows(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	const timeout = time.Hour // no timer fires during the test
	d := newDeadlines(parent, timeout)
	if d.window != 36*time.Second {
		t.Fatalf("window %v, want a hundredth of the timeout", d.window)
	}
	t0 := time.Now()
	first := d.at(t0)
	check := func(ctx context.Context, start time.Time) {
		t.Helper()
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("no deadline")
		}
		if left := dl.Sub(start); left < timeout || left > timeout+d.window {
			t.Errorf("deadline %v after the start, want between %v and %v", left, timeout, timeout+d.window)
		}
	}
	check(first, t0)
	for _, later := range []time.Duration{0, time.Second, d.window} {
		ctx := d.at(t0.Add(later))
		check(ctx, t0.Add(later))
		if ctx != first {
			t.Errorf("a request %v later got a new window", later)
		}
	}
	next := d.at(t0.Add(d.window + time.Millisecond))
	check(next, t0.Add(d.window+time.Millisecond))
	if next == first {
		t.Error("a request more than a window later shares the first window")
	}
	stop()
	for _, ctx := range []context.Context{first, next} {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a window did not end with its parent")
		}
	}
}

// TestDeadlinesEnd: a window's context ends at its deadline.
func TestDeadlinesEnd(t *testing.T) {
	d := newDeadlines(context.Background(), 20*time.Millisecond)
	start := time.Now()
	ctx := d.at(start)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline context did not end")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("err %v, want the deadline exceeded", ctx.Err())
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("ended after %v, before the timeout", took)
	}
}

// TestTimedKeepsRequestValues: a timed request keeps its context's values
// and gets the window's deadline; contexts derived from it end with it.
func TestTimedKeepsRequestValues(t *testing.T) {
	type key struct{}
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	h := &Handler{deadlines: newDeadlines(parent, time.Hour)}
	r := httptest.NewRequest("GET", "/v1/kv/a", nil)
	r = r.WithContext(context.WithValue(r.Context(), key{}, "v"))
	tr := h.timed(r)
	if got := tr.Context().Value(key{}); got != "v" {
		t.Errorf("value %v, want the request's", got)
	}
	if _, ok := tr.Context().Deadline(); !ok {
		t.Error("no deadline")
	}
	child, cancel := context.WithCancel(tr.Context())
	defer cancel()
	// Whatever happens to the request's own context, the cause is the
	// window's.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	gone := h.timed(r.WithContext(cctx))
	short := &Handler{deadlines: newDeadlines(context.Background(), time.Millisecond)}
	expired := short.timed(r.WithContext(cctx))
	<-expired.Context().Done()
	if cause := context.Cause(expired.Context()); !errors.Is(cause, context.DeadlineExceeded) {
		t.Errorf("cause %v of a timed request past its deadline, want the deadline exceeded", cause)
	}
	if cause := context.Cause(gone.Context()); cause != nil {
		t.Errorf("cause %v of a live timed request whose client left, want none", cause)
	}
	stop()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a context derived from a timed request did not end with it")
	}
}

// A request timed twice (a follower serving a request itself after
// waiting to forward it) keeps its first deadline.
func TestTimedKeepsFirstDeadline(t *testing.T) {
	h := &Handler{deadlines: newDeadlines(context.Background(), time.Hour)}
	first := h.timed(httptest.NewRequest("PUT", "/v1/kv/a", nil))
	// Move the shared window on, as time passing would.
	h.deadlines.at(time.Now().Add(time.Minute))
	again := h.timed(first)
	if again.Context() != first.Context() {
		d1, _ := first.Context().Deadline()
		d2, _ := again.Context().Deadline()
		t.Fatalf("timing a timed request again moved its deadline from %v to %v", d1, d2)
	}
}
