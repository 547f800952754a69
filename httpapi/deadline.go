package httpapi

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// deadlines hands out the request timeout. Requests that start within one
// window (a hundredth of the timeout) share one deadline context, derived
// from the drain context: a request's timeout then costs no timer and no
// registration of its own, which a per-request context.WithTimeout does
// (a runtime timer, and a child entry on the request's context, made and
// removed on every write and linearizable read). A request's deadline is
// its start plus the timeout plus at most one window.
type deadlines struct {
	parent  context.Context
	timeout time.Duration
	window  time.Duration

	mu  sync.Mutex // serializes making a new window
	cur atomic.Pointer[deadlineWindow]
}

type deadlineWindow struct {
	ctx      context.Context
	cancel   context.CancelFunc // never called: the deadline or the drain ends ctx
	deadline time.Time
}

func newDeadlines(parent context.Context, timeout time.Duration) *deadlines {
	return &deadlines{parent: parent, timeout: timeout, window: max(timeout/100, time.Millisecond)}
}

// at returns the deadline context for a request starting at now: it ends
// between timeout and timeout plus one window after now, or when the
// parent ends.
func (d *deadlines) at(now time.Time) context.Context {
	if w := d.cur.Load(); w != nil && w.deadline.Sub(now) >= d.timeout {
		return w.ctx
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.cur.Load(); w != nil && w.deadline.Sub(now) >= d.timeout {
		return w.ctx
	}
	w := &deadlineWindow{deadline: now.Add(d.timeout + d.window)}
	w.ctx, w.cancel = context.WithDeadline(d.parent, w.deadline)
	d.cur.Store(w)
	return w.ctx
}

// timedCtx is a request's context under the timeout: the deadline,
// cancellation and error of its window, the values of the request.
// Unlike a context derived from the request's own, it does not end when
// the client disconnects: a timed request runs to its answer or its
// deadline (what a client that went away left behind is at most a write
// it had already sent, whose outcome it cannot know anyway).
type timedCtx struct {
	context.Context // the window
	req             context.Context
}

// Value returns the window's value for key if it has one, else the
// request context's. The window answers the context package's own key
// for its cancellation, so contexts derived from c register on the
// window (not each with a goroutine) and context.Cause reports the
// window's cause; the window holds no other values.
func (c *timedCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.req.Value(key)
}

// timed gives r the request timeout, which also ends when the handler
// drains (a moment after Close). A request already timed keeps its
// deadline: one that a follower serves itself after waiting to forward it
// (it became the leader) must not start its timeout over.
func (h *Handler) timed(r *http.Request) *http.Request {
	if _, ok := r.Context().(*timedCtx); ok {
		return r
	}
	return r.WithContext(&timedCtx{Context: h.deadlines.at(time.Now()), req: r.Context()})
}
