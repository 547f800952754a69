// Package batch packs concurrent requests together without waiting on a
// timer: while fewer than a set number of batches are in flight a request
// goes out at once, alone; past that, requests queue, and each batch that
// completes takes the whole queue with it as the next batch. A lone request
// is as fast as without batching, and under load batches grow with the
// load. cairn uses it for group commit (many writes in one log entry) and
// for followers forwarding writes to the leader (many in one request).
package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Errors returned by Do when its context ends.
var (
	// ErrNotSent means the context ended while the request was still
	// queued: it was never sent.
	ErrNotSent = errors.New("batch: request not sent")
	// ErrUnknown means the context ended after the request was sent: its
	// outcome is unknown.
	ErrUnknown = errors.New("batch: request sent, outcome unknown")
)

// Config configures a Batcher.
type Config[T, R any] struct {
	// MaxInflight is how many batches may be in flight before requests
	// queue. Zero means 1.
	MaxInflight int
	// MaxItems caps the requests in one batch. Zero means no cap.
	MaxItems int
	// MaxSize caps the summed Size of one batch (a single request may
	// exceed it alone). Zero means no cap.
	MaxSize int
	// Size measures a request for MaxSize. Nil counts every request as 1.
	Size func(T) int
	// Run sends one batch and returns one result per request, in order.
	Run func([]T) []R
}

// Batcher packs concurrent requests into batches. It is safe for
// concurrent use.
type Batcher[T, R any] struct {
	cfg Config[T, R]

	mu       sync.Mutex
	inflight int
	queue    []*item[T, R]
}

const (
	queued int32 = iota
	sent
	abandoned
)

type item[T, R any] struct {
	v     T
	done  chan R
	state atomic.Int32
}

// New returns a Batcher.
func New[T, R any](cfg Config[T, R]) *Batcher[T, R] {
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 1
	}
	if cfg.Size == nil {
		cfg.Size = func(T) int { return 1 }
	}
	return &Batcher[T, R]{cfg: cfg}
}

// DoAll sends every request of vs as Do would, and waits for all their
// results from the calling goroutine: errs[i] is nil, ErrNotSent or
// ErrUnknown as for Do. The requests queue together, so they go out in as
// few batches as MaxItems and MaxSize allow.
func (b *Batcher[T, R]) DoAll(ctx context.Context, vs []T) (rs []R, errs []error) {
	its := make([]*item[T, R], len(vs))
	for i, v := range vs {
		its[i] = &item[T, R]{v: v, done: make(chan R, 1)}
	}
	b.mu.Lock()
	idle := b.inflight < b.cfg.MaxInflight && len(b.queue) == 0
	b.queue = append(b.queue, its...)
	if idle && len(its) > 0 {
		b.inflight++
		batch := b.take()
		b.mu.Unlock()
		go b.loop(batch)
	} else {
		b.mu.Unlock()
	}
	rs = make([]R, len(its))
	errs = make([]error, len(its))
	for i, it := range its {
		select {
		case rs[i] = <-it.done:
			continue
		case <-ctx.Done():
		}
		// Too late for this request and for those not answered yet.
		for j := i; j < len(its); j++ {
			select {
			case rs[j] = <-its[j].done:
				continue
			default:
			}
			if its[j].state.CompareAndSwap(queued, abandoned) {
				errs[j] = ErrNotSent
			} else {
				errs[j] = ErrUnknown
			}
		}
		break
	}
	return rs, errs
}

// Do sends v in the next batch and waits for its result. If ctx ends first
// the error is ErrNotSent (still queued: it will never be sent) or
// ErrUnknown (already sent).
func (b *Batcher[T, R]) Do(ctx context.Context, v T) (R, error) {
	it := &item[T, R]{v: v, done: make(chan R, 1)}
	b.mu.Lock()
	if b.inflight < b.cfg.MaxInflight && len(b.queue) == 0 {
		b.inflight++
		b.mu.Unlock()
		go b.loop([]*item[T, R]{it})
	} else {
		b.queue = append(b.queue, it)
		b.mu.Unlock()
	}
	select {
	case r := <-it.done:
		return r, nil
	case <-ctx.Done():
		var zero R
		if it.state.CompareAndSwap(queued, abandoned) {
			return zero, ErrNotSent
		}
		return zero, ErrUnknown
	}
}

// loop sends batch, then keeps taking the queue until it is empty.
func (b *Batcher[T, R]) loop(batch []*item[T, R]) {
	for {
		b.send(batch)
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		batch = b.take()
		b.mu.Unlock()
	}
}

// take removes the next batch from the front of the queue; b.mu is held.
func (b *Batcher[T, R]) take() []*item[T, R] {
	n, size := 0, 0
	for n < len(b.queue) {
		if b.cfg.MaxItems > 0 && n == b.cfg.MaxItems {
			break
		}
		s := b.cfg.Size(b.queue[n].v)
		if n > 0 && b.cfg.MaxSize > 0 && size+s > b.cfg.MaxSize {
			break
		}
		size += s
		n++
	}
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil
	}
	return batch
}

func (b *Batcher[T, R]) send(batch []*item[T, R]) {
	live := batch[:0]
	for _, it := range batch {
		if it.state.CompareAndSwap(queued, sent) {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return
	}
	vs := make([]T, len(live))
	for i, it := range live {
		vs[i] = it.v
	}
	rs := b.cfg.Run(vs)
	for i, it := range live {
		var r R
		if i < len(rs) {
			r = rs[i]
		}
		it.done <- r
	}
}
