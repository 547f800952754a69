package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
)

// forward sends the request to the leader and relays its answer, headers
// and all. body is the request body already read (nil for none). A
// connection the leader refused is retried against whichever leader comes
// next; a write that may have reached the leader is never resent.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	hops, _ := strconv.Atoi(r.Header.Get(headerHops))
	if hops >= maxHops {
		h.writeError(w, ErrTooManyHops)
		return
	}
	ctx := r.Context()
	for attempt := 0; ; attempt++ {
		addr, err := h.leaderAddr(ctx)
		if err != nil {
			h.writeError(w, err)
			return
		}
		if addr == "" {
			// This node became the leader meanwhile: serve it here.
			r.Header.Set(headerHops, strconv.Itoa(hops+1))
			if body != nil {
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			h.ServeHTTP(w, r)
			return
		}
		resp, err := h.send(ctx, r, addr, body, hops+1)
		if err == nil {
			relay(w, resp)
			return
		}
		var opErr *net.OpError
		neverSent := errors.As(err, &opErr) && opErr.Op == "dial"
		if ctx.Err() != nil || (!neverSent && r.Method != http.MethodGet) || attempt >= 20 {
			h.log.Warn("forward to leader failed", "leader", addr, "err", err)
			if neverSent || r.Method == http.MethodGet {
				h.writeError(w, fmt.Errorf("%w: leader at %s unreachable: %v", raftnode.ErrNoLeader, addr, err))
			} else {
				h.writeError(w, fmt.Errorf("%w: %v", raftnode.ErrUnknownOutcome, err))
			}
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// leaderAddr waits (up to LeaderWait) for a leader and returns its HTTP
// address, or "" if this node leads.
func (h *Handler) leaderAddr(ctx context.Context) (string, error) {
	id, addr, err := h.node.WaitForLeader(ctx, h.cfg.LeaderWait)
	if err != nil {
		return "", fmt.Errorf("%w within %v", err, h.cfg.LeaderWait)
	}
	if id == h.node.ID() {
		return "", nil
	}
	return addr, nil
}

func (h *Handler) send(ctx context.Context, r *http.Request, addr string, body []byte, hops int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.URL.RequestURI(), rd)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"Content-Type", headerIdempotency, "Accept"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	req.Header.Set(headerHops, strconv.Itoa(hops))
	return h.fwd.Do(req)
}

// relay copies the leader's response, flushing as it goes so that streams
// (watches) pass through.
func relay(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	hd := w.Header()
	for k := range hd {
		delete(hd, k)
	}
	for k, vs := range resp.Header {
		hd[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}
