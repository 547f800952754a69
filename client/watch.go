package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// DefaultWatchIdleTimeout is how long a watch stream may stay silent
// before the client gives up on it and resumes on another endpoint. A
// server sends a progress line every 5 seconds when no events flow, so
// this is three missed ones: a node that hangs with its connections open
// (a paused process, a dead machine behind a live proxy) is left within
// that time.
const DefaultWatchIdleTimeout = 15 * time.Second

// maxWatchBatch caps the events of one WatchResponse.
const maxWatchBatch = 1000

// EventType says what happened to a key.
type EventType string

// Event types, for Event.Type.
const (
	// EventPut is a write of the key (creation or update).
	EventPut EventType = "put"
	// EventDelete is a deletion of the key, by a delete, a prefix delete,
	// a transaction or the key's TTL running out.
	EventDelete EventType = "delete"
)

// Event is one change of a key, reported by Watch.
type Event struct {
	// Type is EventPut or EventDelete.
	Type EventType
	// KV is the key after a put: its value, revisions and version. After
	// a delete it holds the key, its create revision and, as ModRevision,
	// the revision of the deletion; Value is nil and Version 0.
	KV KV
}

// Revision returns the store revision of the change (KV.ModRevision).
func (e Event) Revision() int64 { return e.KV.ModRevision }

// eventJSON is the API's JSON form of an event: a line of a watch stream.
type eventJSON struct {
	Type EventType `json:"type"`
	kvJSON
}

// MarshalJSON encodes e as a line of the watch stream does: {"type",
// "key", "value" or "value_base64", "create_revision", "mod_revision",
// "version"}.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(eventJSON{Type: e.Type, kvJSON: e.KV.toJSON()})
}

// UnmarshalJSON decodes an event line of a watch stream.
func (e *Event) UnmarshalJSON(b []byte) error {
	var j eventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	kv, err := j.kvJSON.toKV()
	if err != nil {
		return err
	}
	*e = Event{Type: j.Type, KV: kv}
	return nil
}

// WatchResponse is what Watch delivers: a batch of events, a progress
// notice (with WithProgressNotify), or the error that ends the watch.
type WatchResponse struct {
	// Events are changes in revision order; every change matching the
	// watch appears exactly once across the responses of one watch, even
	// when the client switched endpoints in between.
	Events []Event
	// ProgressRevision, in a response without events, says that every
	// change up to this revision has been delivered. Only sent with
	// WithProgressNotify.
	ProgressRevision int64
	// Err, when not nil, ends the watch: the channel is closed after this
	// response. It matches ErrCompacted (a *CompactedError) when the
	// revision to start or resume at is no longer held by any reachable
	// endpoint, and ErrInvalidArgument (a *StatusError) for a bad key or
	// a start revision in the future.
	Err error
	// Endpoint is the base URL of the endpoint whose stream carried the
	// response.
	Endpoint string
	// Node is the ID of the node that served that stream.
	Node string
}

// IsProgressNotify reports whether r is a progress notice: no events, no
// error, only ProgressRevision.
func (r *WatchResponse) IsProgressNotify() bool {
	return len(r.Events) == 0 && r.Err == nil && r.ProgressRevision > 0
}

// watchOpts are the options Watch accepts.
const watchOpts = optPrefix | optRevision | optProgressNotify

// Watch reports the changes of key (or, with WithPrefix, of every key under
// it; an empty key with WithPrefix watches everything) on the returned
// channel, in revision order, from the revision given with WithRevision
// or, without it, from the changes after the watch started.
//
// Any member serves a watch from its own applied state, so a watch needs no
// leader. When a stream ends, its connection fails, its endpoint errs or
// stays silent for DefaultWatchIdleTimeout, the client resumes on the next
// endpoint from the last revision it delivered (or the last progress
// revision) plus one, so the caller sees every change exactly once, with no
// gap and no duplicate, across node failures and leader changes. It retries
// for as long as ctx lives, pausing as Config.RetryBackoff and
// Config.MaxRetryBackoff say once every endpoint has failed in a row;
// Config.Timeout, but no less than DefaultTimeout, bounds the wait for each
// stream's response headers.
//
// The channel is closed when ctx ends (without an error response), or
// right after a response whose Err is set: a bad key or start revision, or
// a revision no longer held by any reachable endpoint (ErrCompacted). The
// caller must keep receiving until the channel is closed or ctx ends; a
// consumer that falls far behind makes the server drop the stream, which
// the client then resumes. Options: WithPrefix, WithRevision,
// WithProgressNotify.
//
//	for resp := range c.Watch(ctx, "config/", client.WithPrefix(), client.WithRevision(rev+1)) {
//		if resp.Err != nil {
//			return resp.Err
//		}
//		for _, ev := range resp.Events {
//			fmt.Println(ev.Type, ev.KV.Key, ev.Revision())
//		}
//	}
func (c *Client) Watch(ctx context.Context, key string, opts ...Option) <-chan WatchResponse {
	out := make(chan WatchResponse)
	o, err := buildOp("Watch", watchOpts, opts)
	prefix := o != nil && o.set&optPrefix != 0
	if err == nil && key == "" && !prefix {
		err = fmt.Errorf("client: %w: empty key", ErrInvalidArgument)
	}
	if err == nil && c.closed.Load() {
		err = ErrClosed
	}
	if err != nil {
		go func() {
			defer close(out)
			select {
			case out <- WatchResponse{Err: err}:
			case <-ctx.Done():
			}
		}()
		return out
	}
	w := &watcher{
		c:        c,
		ctx:      ctx,
		out:      out,
		path:     "/v1/watch/" + escapeKey(key),
		prefix:   prefix,
		progress: o.set&optProgressNotify != 0,
	}
	if o.revision > 0 {
		w.done, w.known = o.revision-1, true
	}
	go w.run()
	return out
}

// watcher is the state of one Watch: what has been delivered, so that a
// new stream picks up exactly where the last one stopped.
type watcher struct {
	c        *Client
	ctx      context.Context
	out      chan<- WatchResponse
	path     string
	prefix   bool
	progress bool // deliver progress notices

	// Every event up to done has been delivered or precedes the watch;
	// known is false until the first stream says where the watch starts.
	done  int64
	known bool
	// last is the revision of the last event delivered and lastN how many
	// of its events were; a revision's events may span two streams when
	// one ends in the middle of a transaction's events.
	last  int64
	lastN int
	// opened is set once a stream has been accepted.
	opened       bool
	lastProgress int64
}

// failKind classifies why a stream ended.
type failKind int

const (
	failTransient failKind = iota // worth retrying: the endpoint may recover or another serve
	failDial                      // nothing listens there: the endpoint is down
	failCompacted                 // 410: the endpoint no longer has the revision
	failRefused                   // another 4xx before any stream opened: a bad request
)

type streamFailure struct {
	kind failKind
	err  error
}

// resumePoint returns the revision the next stream starts at (0: from
// now) and how many events of that revision were already delivered.
func (w *watcher) resumePoint() (from int64, skip int) {
	switch {
	case w.lastN > 0 && w.last > w.done:
		return w.last, w.lastN
	case w.known:
		return w.done + 1, 0
	}
	return 0, 0
}

func (w *watcher) run() {
	defer close(w.out)
	c := w.c
	n := len(c.endpoints)
	idx := int(c.preferred.Load()) % n
	backoff := c.cfg.RetryBackoff
	var round []streamFailure // failures in a row since the last good stream
	for {
		if len(round) > 0 && len(round)%n == 0 {
			// Every endpoint failed in a row: give up if they all refused
			// for good, else pause before the next round.
			if err := verdict(round[len(round)-n:]); err != nil {
				w.send(WatchResponse{Err: err})
				return
			}
			if sleep(w.ctx, backoff) != nil {
				return
			}
			backoff = min(2*backoff, c.cfg.MaxRetryBackoff)
		}
		good, f := w.stream(c.endpoints[idx])
		if w.ctx.Err() != nil {
			return
		}
		if good {
			round, backoff = round[:0], c.cfg.RetryBackoff
		}
		if f.kind == failRefused && !w.opened {
			// A bad key or start revision: nothing to retry.
			w.send(WatchResponse{Err: f.err})
			return
		}
		round = append(round, f)
		idx = (idx + 1) % n
	}
}

// verdict returns the error that ends the watch when, in a full round of
// endpoints, at least one no longer holds the revision (410 compacted) and
// every other one said so too or was down; nil when some failure may pass.
func verdict(round []streamFailure) error {
	var final error
	for _, f := range round {
		switch f.kind {
		case failCompacted:
			if final == nil {
				final = f.err
			}
		case failDial:
		default:
			return nil
		}
	}
	return final
}

// send delivers r unless ctx ends first; it reports whether it did.
func (w *watcher) send(r WatchResponse) bool {
	select {
	case w.out <- r:
		return true
	case <-w.ctx.Done():
		return false
	}
}

// streamLine is any line of a watch stream.
type streamLine struct {
	Type string `json:"type"`
	kvJSON
	Revision int64  `json:"revision"`
	Error    string `json:"error"`
	Code     string `json:"code"`
}

// stream runs one watch stream on endpoint ep until it ends, delivering
// what it carries. good is true when the endpoint accepted the watch and
// sent at least one event or progress line; f says why the stream ended.
func (w *watcher) stream(ep string) (good bool, f streamFailure) {
	c := w.c
	sctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	// Until the headers come. A server may take up to its leader wait (3s)
	// before it refuses a start revision it has not reached, so even a
	// short Config.Timeout leaves it that long: the refusal is then
	// reported rather than retried for ever.
	timer := time.AfterFunc(max(c.cfg.Timeout, DefaultTimeout), cancel)
	defer timer.Stop()

	from, skip := w.resumePoint()
	q := url.Values{}
	if w.prefix {
		q.Set("prefix", "true")
	}
	if from > 0 {
		q.Set("rev", strconv.FormatInt(from, 10))
	}
	u := ep + w.path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u, nil)
	if err != nil {
		return false, streamFailure{failRefused, fmt.Errorf("client: building request: %w", err)}
	}
	req.Header.Set("User-Agent", "cairn-go-client")
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.hc.Do(req)
	if err != nil {
		if isDialError(err) {
			return false, streamFailure{failDial, err}
		}
		return false, streamFailure{failTransient, err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		serr, extra := readStatusError(resp, ep)
		switch {
		case resp.StatusCode == http.StatusGone || serr.Code == "compacted":
			return false, streamFailure{failCompacted, &CompactedError{Revision: from, OldestRevision: extra.OldestRevision, Status: serr}}
		case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout &&
			resp.StatusCode != http.StatusTooManyRequests && !w.opened:
			return false, streamFailure{failRefused, serr}
		}
		// Once the watch has run, a refusal is most likely a node lagging
		// behind the revision reached elsewhere ("rev in the future"):
		// another endpoint, or this one a little later, will serve it.
		return false, streamFailure{failTransient, serr}
	}
	w.opened = true
	node := resp.Header.Get(headerNode)
	if !w.known {
		if h := headerInt(resp.Header, headerRevision); h > 0 {
			w.done, w.known = h, true
		}
	}

	idle := c.watchIdle
	timer.Reset(idle)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var batch []Event
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		timer.Stop()
		ok := w.send(WatchResponse{Events: batch, Endpoint: ep, Node: node})
		batch = nil
		timer.Reset(idle)
		return ok
	}
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			// A cut-off last line is dropped: the next stream sends it
			// again.
			flush()
			if sctx.Err() != nil && w.ctx.Err() == nil {
				err = fmt.Errorf("watch stream from %s silent for %v: %w", ep, idle, err)
			}
			return good, streamFailure{failTransient, err}
		}
		timer.Reset(idle)
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var l streamLine
		if err := json.Unmarshal(line, &l); err != nil {
			flush()
			return good, streamFailure{failTransient, fmt.Errorf("watch stream from %s: bad line %.100q: %w", ep, line, err)}
		}
		if l.Type != "error" {
			good = true // the endpoint serves the watch
		}
		switch l.Type {
		case string(EventPut), string(EventDelete):
			kv, err := l.kvJSON.toKV()
			if err != nil {
				flush()
				return good, streamFailure{failTransient, fmt.Errorf("watch stream from %s: %w", ep, err)}
			}
			r := kv.ModRevision
			if !w.known {
				w.done, w.known = r-1, true
			}
			if r <= w.done {
				continue // already delivered, or before the watch
			}
			if r == from && skip > 0 {
				skip-- // delivered by the previous stream
				continue
			}
			if r != w.last {
				w.done = max(w.done, w.last) // that revision is complete
				w.last, w.lastN = r, 0
			}
			w.lastN++
			batch = append(batch, Event{Type: EventType(l.Type), KV: kv})
		case "progress":
			if !flush() {
				return good, streamFailure{failTransient, w.ctx.Err()}
			}
			w.done, w.known = max(w.done, l.Revision), true
			if w.progress && l.Revision > w.lastProgress {
				w.lastProgress = l.Revision
				timer.Stop()
				ok := w.send(WatchResponse{ProgressRevision: l.Revision, Endpoint: ep, Node: node})
				timer.Reset(idle)
				if !ok {
					return good, streamFailure{failTransient, w.ctx.Err()}
				}
			}
		case "error":
			flush()
			return good, streamFailure{failTransient, fmt.Errorf("watch stream from %s ended: %s (%s)", ep, l.Error, l.Code)}
		default:
			// A line type this client does not know: skip it.
		}
		if len(batch) >= maxWatchBatch || !lineBuffered(br) {
			if !flush() {
				return good, streamFailure{failTransient, w.ctx.Err()}
			}
		}
	}
}

// lineBuffered reports whether br holds a whole line already, so reading
// it will not block.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}
