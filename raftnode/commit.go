package raftnode

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/store"
)

// groupCommit packs writes into log entries. While fewer than max
// proposals are in flight a write is proposed at once, alone; past that,
// writes queue, and each proposal that completes takes the whole queue
// with it as one OpBatch entry: one log append and one fsync on every node
// for all of them. Nothing waits on a timer, so a lone write is as fast as
// without batching, and under load the batches grow by themselves.
type groupCommit struct {
	n        *Node
	max      int
	maxBytes int

	mu         sync.Mutex
	inflight   int
	queue      []*proposal
	queueBytes int
}

const (
	proposalQueued int32 = iota
	proposalSent
	proposalAbandoned
)

type proposal struct {
	data  []byte
	done  chan proposalResult
	state atomic.Int32
}

type proposalResult struct {
	res *store.Result
	err error
}

// submit proposes data (an encoded command) and waits for its result. If
// ctx ends while the write is still queued it is never proposed
// (ErrTimeout); once proposed, the outcome is unknown (ErrUnknownOutcome).
func (g *groupCommit) submit(ctx context.Context, data []byte) (*store.Result, error) {
	p := &proposal{data: data, done: make(chan proposalResult, 1)}
	g.mu.Lock()
	if g.inflight < g.max && len(g.queue) == 0 {
		g.inflight++
		g.mu.Unlock()
		go g.run([]*proposal{p})
	} else {
		g.queue = append(g.queue, p)
		g.queueBytes += len(data)
		g.mu.Unlock()
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(proposalQueued, proposalAbandoned) {
			return nil, ErrTimeout
		}
		return nil, ErrUnknownOutcome
	}
}

// run proposes batch, then keeps taking the queue until it is empty.
func (g *groupCommit) run(batch []*proposal) {
	for {
		g.propose(batch)
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.inflight--
			g.mu.Unlock()
			return
		}
		batch = g.take()
		g.mu.Unlock()
	}
}

// take removes up to maxBytes (at least one write) and MaxBatch writes
// from the front of the queue. g.mu must be held.
func (g *groupCommit) take() []*proposal {
	n, size := 0, 0
	for n < len(g.queue) && n < store.MaxBatch && (n == 0 || size+len(g.queue[n].data) <= g.maxBytes) {
		size += len(g.queue[n].data)
		n++
	}
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.queueBytes -= size
	if len(g.queue) == 0 {
		g.queue = nil
	}
	return batch
}

func (g *groupCommit) propose(batch []*proposal) {
	live := batch[:0]
	for _, p := range batch {
		if p.state.CompareAndSwap(proposalQueued, proposalSent) {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	data := live[0].data
	if len(live) > 1 {
		subs := make([][]byte, len(live))
		for i, p := range live {
			subs[i] = p.data
		}
		data = store.EncodeBatch(subs)
	}
	f := g.n.raft.Apply(data, 5*time.Second)
	if err := f.Error(); err != nil {
		err = translate(err)
		for _, p := range live {
			p.done <- proposalResult{err: err}
		}
		return
	}
	res, _ := f.Response().(*store.Result)
	switch {
	case res == nil:
		g.fail(live, errors.New("raftnode: apply returned no result"))
	case res.Err != nil:
		g.fail(live, res.Err)
	case len(live) == 1:
		live[0].done <- proposalResult{res: res}
	case len(res.Batch) != len(live):
		g.fail(live, errors.New("raftnode: batch result does not match the batch"))
	default:
		for i, p := range live {
			p.done <- proposalResult{res: res.Batch[i]}
		}
	}
}

func (g *groupCommit) fail(ps []*proposal, err error) {
	for _, p := range ps {
		p.done <- proposalResult{err: err}
	}
}
