package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// DefaultWatchHistory is how many recent events (at least) a store keeps
// for watches that start in the past; it holds up to a quarter more
// between trims.
const DefaultWatchHistory = 10000

// Watch errors.
var (
	// ErrCompacted is returned (as a *CompactedError) when a watch asks
	// for a revision older than the history kept.
	ErrCompacted = errors.New("revision compacted")
	// ErrWatchOverflow ends a watcher that fell too far behind; it can
	// resume from the last revision it saw.
	ErrWatchOverflow = errors.New("watcher fell behind")
)

// CompactedError reports the oldest revision a watch can still start at.
type CompactedError struct {
	// Oldest is the oldest revision still held.
	Oldest int64
}

// Error implements error.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("revision compacted: the oldest revision held is %d", e.Oldest)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// Watcher receives the events of one watch. Events arrive in revision
// order on C; C is closed when the watch ends, and Err then says why.
type Watcher struct {
	// C delivers events in batches, each batch in revision order.
	C <-chan []Event

	c      chan []Event
	key    string
	prefix bool
	from   int64 // events before this revision are not sent
	hub    *watchHub
	err    error
}

// Err is why the watcher ended (nil while it runs or after Cancel).
func (w *Watcher) Err() error {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	return w.err
}

// Progress returns a revision such that every event up to it has already
// been sent on C. Read it, drain C, and then report it.
func (w *Watcher) Progress() int64 {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	return w.hub.current
}

// Cancel ends the watcher.
func (w *Watcher) Cancel() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.drop(w, nil)
}

func (w *Watcher) match(key string) bool {
	if w.prefix {
		return strings.HasPrefix(key, w.key)
	}
	return key == w.key
}

func (w *Watcher) filter(events []Event) []Event {
	var out []Event
	for _, e := range events {
		if e.KV.ModRevision >= w.from && w.match(e.KV.Key) {
			out = append(out, e)
		}
	}
	return out
}

// watchHub keeps a ring of recent events and the live watchers.
type watchHub struct {
	mu      sync.Mutex
	limit   int
	history []Event // oldest first
	oldest  int64   // every event at or after this revision is in history
	current int64   // the revision of the last events published
	subs    map[*Watcher]struct{}
}

func (h *watchHub) init() {
	h.limit = DefaultWatchHistory
	h.subs = map[*Watcher]struct{}{}
}

func (h *watchHub) reset(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.history = nil
	h.oldest = rev + 1
	h.current = rev
	for w := range h.subs {
		h.drop(w, &CompactedError{Oldest: h.oldest})
	}
}

func (h *watchHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		h.drop(w, ErrClosed)
	}
}

func (h *watchHub) drop(w *Watcher, err error) {
	if _, ok := h.subs[w]; !ok {
		return
	}
	delete(h.subs, w)
	w.err = err
	close(w.c)
}

func (h *watchHub) publish(events []Event, rev int64) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldest == 0 {
		h.oldest = events[0].KV.ModRevision
	}
	h.history = append(h.history, events...)
	h.current = rev
	// Trim in chunks, once the history is a quarter over its limit, so the
	// copy is paid once per limit/4 events rather than on every commit.
	if over := len(h.history) - h.limit; over > h.limit/4 {
		// Drop whole revisions so that a watch from h.oldest never sees
		// half of one.
		cut := h.history[over-1].KV.ModRevision
		for over < len(h.history) && h.history[over].KV.ModRevision == cut {
			over++
		}
		if kept := h.history[over:]; cap(h.history) > 2*(h.limit+h.limit/4) {
			// One huge revision (a delete by prefix of many keys) grew
			// the array far past the limit: let that memory go.
			h.history = append([]Event(nil), kept...)
		} else {
			// In place: the array is reused, so a busy store does not
			// allocate a new history on every trim. The tail is cleared
			// so that the dropped events' keys and values can be freed.
			n := copy(h.history, kept)
			clear(h.history[n:])
			h.history = h.history[:n]
		}
		h.oldest = cut + 1
	}
	for w := range h.subs {
		if evs := w.filter(events); len(evs) > 0 {
			select {
			case w.c <- evs:
			default:
				h.drop(w, ErrWatchOverflow)
			}
		}
	}
}

// Watch starts a watch on key (or every key under it when prefix is set)
// from revision from; 0 means from the next change. A revision older than
// the history kept fails with a *CompactedError.
func (s *Store) Watch(key string, prefix bool, from int64) (*Watcher, error) {
	h := &s.watchers
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.current
	c := make(chan []Event, 256)
	w := &Watcher{C: c, c: c, key: key, prefix: prefix, from: from, hub: h}
	if from > 0 && from <= cur {
		oldest := h.oldest
		if oldest == 0 {
			oldest = cur + 1
		}
		if from < oldest {
			return nil, &CompactedError{Oldest: oldest}
		}
		var past []Event
		for _, e := range h.history {
			if e.KV.ModRevision >= from && w.match(e.KV.Key) {
				past = append(past, e)
			}
		}
		if len(past) > 0 {
			c <- past
		}
	}
	h.subs[w] = struct{}{}
	return w, nil
}
