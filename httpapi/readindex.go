package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/cairn-kv/cairn/raftnode"
)

// readIndexPath is the internal endpoint a follower asks the leader for a
// read index on. It is not forwarded: only the leader answers it.
const readIndexPath = "/v1/internal/read-index"

// readIndex answers a follower: the index a linearizable read must wait
// for, confirmed by a quorum round.
func (h *Handler) readIndex(w http.ResponseWriter, r *http.Request, _ string) {
	idx, err := h.node.ReadIndex(r.Context())
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"index":` + strconv.FormatUint(idx, 10) + "}\n"))
}

// readIndexClient gets read indexes from the leader for a follower's
// linearizable reads. Concurrent reads share requests: a request serves
// every read that arrived before it was sent, never one that came later.
type readIndexClient struct {
	h       *Handler
	mu      sync.Mutex
	waiting []chan readIndexResult
	running bool
}

type readIndexResult struct {
	index uint64
	err   error
}

func (c *readIndexClient) get(ctx context.Context) (uint64, error) {
	ch := make(chan readIndexResult, 1)
	c.mu.Lock()
	c.waiting = append(c.waiting, ch)
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case res := <-ch:
		return res.index, res.err
	case <-ctx.Done():
		return 0, raftnode.ErrTimeout
	}
}

func (c *readIndexClient) loop() {
	for {
		c.mu.Lock()
		batch := c.waiting
		c.waiting = nil
		if len(batch) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), c.h.cfg.LeaderWait)
		idx, err := c.fetch(ctx)
		cancel()
		for _, ch := range batch {
			ch <- readIndexResult{idx, err}
		}
	}
}

func (c *readIndexClient) fetch(ctx context.Context) (uint64, error) {
	addr, err := c.h.leaderAddr(ctx)
	if err != nil {
		return 0, err
	}
	if addr == "" {
		return 0, raftnode.ErrNotLeader // this node leads now
	}
	if idx, ok, err := c.h.readIndexStream(ctx, addr); ok {
		return idx, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+readIndexPath, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(headerHops, "1")
	resp, err := c.h.fwd.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("read index from %s: %s", addr, resp.Status)
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Index == 0 {
		return 0, fmt.Errorf("read index from %s: bad answer %q", addr, body)
	}
	return out.Index, nil
}
