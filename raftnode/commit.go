package raftnode

import (
	"errors"
	"time"

	"github.com/cairn-kv/cairn/raftnode/batch"
	"github.com/cairn-kv/cairn/store"
)

// proposalResult is the outcome of one write in a group commit.
type proposalResult struct {
	res *store.Result
	err error
}

// newGroupCommit packs writes into log entries (see package batch): while
// fewer than max entries of writes are in flight a write is proposed at
// once, alone; past that, each entry that completes takes the queued
// writes (up to 1 MiB) with it as one OpBatch entry: one log append and
// one fsync on every node for all of them.
func newGroupCommit(n *Node, max int) *batch.Batcher[[]byte, proposalResult] {
	return batch.New(batch.Config[[]byte, proposalResult]{
		MaxInflight: max,
		MaxItems:    store.MaxBatch,
		MaxSize:     1 << 20,
		Size:        func(b []byte) int { return len(b) },
		Run:         n.propose,
	})
}

// outcome turns the group commit's answer for one write into Apply's: a
// write still queued when its context ended was never proposed
// (ErrTimeout); once proposed, the outcome is unknown (ErrUnknownOutcome).
func outcome(r proposalResult, err error) (*store.Result, error) {
	switch {
	case errors.Is(err, batch.ErrNotSent):
		return nil, ErrTimeout
	case err != nil:
		return nil, ErrUnknownOutcome
	case r.err != nil:
		return nil, r.err
	case r.res.Err != nil:
		return nil, r.res.Err
	}
	return r.res, nil
}

// propose proposes one entry for the writes of a batch.
func (n *Node) propose(writes [][]byte) []proposalResult {
	out := make([]proposalResult, len(writes))
	fail := func(err error) []proposalResult {
		for i := range out {
			out[i].err = err
		}
		return out
	}
	data := writes[0]
	if len(writes) > 1 {
		data = store.EncodeBatch(writes)
	}
	f := n.raft.Apply(data, 5*time.Second)
	if err := f.Error(); err != nil {
		return fail(translate(err))
	}
	res, _ := f.Response().(*store.Result)
	switch {
	case res == nil:
		return fail(errors.New("raftnode: apply returned no result"))
	case res.Err != nil:
		return fail(res.Err)
	case len(writes) == 1:
		out[0].res = res
	case len(res.Batch) != len(writes):
		return fail(errors.New("raftnode: batch result does not match the batch"))
	default:
		for i := range out {
			out[i].res = res.Batch[i]
		}
	}
	return out
}
