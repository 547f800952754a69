package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
)

// progressEvery is how often a watch stream reports the current revision
// when no events flow.
const progressEvery = 5 * time.Second

// eventJSON is an event line of a watch stream.
type eventJSON struct {
	Type string `json:"type"`
	kvJSON
}

// progressJSON is a progress line: every event up to Revision was sent.
type progressJSON struct {
	Type     string `json:"type"`
	Revision int64  `json:"revision"`
}

// endJSON is the last line of a stream that ended early.
type endJSON struct {
	Type  string `json:"type"`
	Error string `json:"error"`
	Code  string `json:"code"`
}

// watch streams change events as newline-delimited JSON from this node's
// applied state, so any node serves it and it survives a leader change.
// Lines are events ("put", "delete"), "progress" lines carrying a revision
// up to which everything has been sent, and a final "error" line when the
// stream ends early (the client resumes from its last revision + 1).
func (h *Handler) watch(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	prefix, err := keyOrPrefix(q, key)
	if err != nil {
		h.writeError(w, err)
		return
	}
	from, _, err := parseInt(q, "rev", 0)
	if err != nil {
		h.writeError(w, err)
		return
	}
	if from > h.store.Revision()+1 {
		// A lagging node may be behind a client resuming elsewhere: give
		// it a moment to catch up before calling the revision bogus.
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.LeaderWait)
		err := h.store.WaitRevision(ctx, from-1)
		cancel()
		if err != nil {
			h.writeError(w, badArg(fmt.Sprintf("rev %d is in the future: the store is at revision %d", from, h.store.Revision())))
			return
		}
	}
	wt, err := h.store.Watch(key, prefix, from)
	if err != nil {
		h.writeError(w, err)
		return
	}
	defer wt.Cancel()

	hd := w.Header()
	hd.Set("Content-Type", "application/x-ndjson")
	hd.Set("Cache-Control", "no-cache")
	hd.Set(headerRevision, itoa(wt.Progress()))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	flusher, _ := w.(http.Flusher)
	flush := func() bool {
		if bw.Flush() != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	send := func(evs []store.Event) {
		for i := range evs {
			e := eventJSON{Type: opNames[evs[i].Type], kvJSON: toJSON(&evs[i].KV)}
			enc.Encode(&e)
		}
	}
	progress := func() bool {
		rev := wt.Progress()
		for drained := false; !drained; {
			select {
			case evs, ok := <-wt.C:
				if !ok {
					return false
				}
				send(evs)
			default:
				drained = true
			}
		}
		enc.Encode(&progressJSON{Type: "progress", Revision: rev})
		return flush()
	}
	if !progress() {
		h.endWatch(enc, wt, flush)
		return
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.closing:
			h.endWatch(enc, wt, flush)
			return
		case evs, ok := <-wt.C:
			if !ok {
				h.endWatch(enc, wt, flush)
				return
			}
			send(evs)
			if !flush() {
				return
			}
		case <-tick.C:
			if !progress() {
				h.endWatch(enc, wt, flush)
				return
			}
		}
	}
}

func (h *Handler) endWatch(enc *json.Encoder, wt *store.Watcher, flush func() bool) {
	err := wt.Err()
	if err == nil {
		err = raftnode.ErrShutdown
	}
	e := endJSON{Type: "error", Error: err.Error(), Code: "watch_ended"}
	if errors.Is(err, store.ErrCompacted) {
		e.Code = "compacted"
	}
	enc.Encode(&e)
	flush()
}
