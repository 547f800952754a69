package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-kv/cairn/store"
)

// asyncLog lets the leader write its log in parallel with replication
// (Raft thesis, 10.2.1), which hashicorp/raft does not: it stores an entry
// on the leader before sending it. While this node leads, StoreLogs only
// queues the entries (they are readable at once) and a writer goroutine
// appends them to the log behind it, in order, many at a time. On a
// follower every call is synchronous, after the queue has drained, so a
// follower's acknowledgement still means the entry is on its disk; so is
// a leader's call with anything but commands in it (onlyCommands).
//
// Raft counts the leader's own copy towards the majority as soon as
// StoreLogs returns, so an entry may be "committed" inside Raft before it
// is on the leader's disk. Nothing is allowed to depend on such an entry
// until it is: the durable index says how far the log is on disk, the
// commit index sent to followers is clamped to it (clampTransport), and
// the state machine applies an entry only once it is durable here
// (gatedFSM). An entry therefore becomes visible (applied anywhere,
// answered to a client) only once a majority including the leader has it
// on disk. If the leader
// crashes first the entry may be lost, but nobody has seen it.
type asyncLog struct {
	inner    raft.LogStore
	isLeader func() bool
	onFail   func() // called once when writes start failing
	log      *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	pending []*raft.Log // queued leader entries, contiguous, oldest first
	err     error       // the writer's last error; nil once a write succeeds
	closed  bool        // no more writes; waits end
	done    chan struct{}

	// durable is the highest index such that the log holds every entry up
	// to it on disk.
	durable atomic.Uint64
	// refused is set once waitDurable has refused an entry.
	refused atomic.Bool
}

// errLogClosed is returned by calls after close.
var errLogClosed = errors.New("raftnode: the raft log is closed")

// writeRetry bounds the wait between attempts of a failing write.
const writeRetry = 2 * time.Second

func newAsyncLog(inner raft.LogStore, isLeader func() bool, onFail func(), log *slog.Logger) (*asyncLog, error) {
	a := &asyncLog{inner: inner, isLeader: isLeader, onFail: onFail, log: log, done: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	last, err := inner.LastIndex()
	if err != nil {
		return nil, err
	}
	a.durable.Store(last)
	go a.writer()
	return a, nil
}

// writer appends the queued entries, all that are queued in one write. A
// failed write (a full disk) is retried, more slowly each time, until it
// succeeds or the log closes; meanwhile new leader entries are refused.
func (a *asyncLog) writer() {
	defer close(a.done)
	a.mu.Lock()
	defer a.mu.Unlock()
	wait := 50 * time.Millisecond
	for {
		for len(a.pending) == 0 && !a.closed {
			a.cond.Wait()
		}
		if len(a.pending) == 0 || (a.closed && a.err != nil) {
			return
		}
		batch := a.pending[:len(a.pending):len(a.pending)]
		a.mu.Unlock()
		err := a.inner.StoreLogs(batch)
		a.mu.Lock()
		if err != nil {
			first := a.err == nil
			a.err = err
			if first {
				a.log.Error("cannot write the raft log; retrying", "err", err)
				// An idle leader would otherwise keep leading with
				// writes it cannot complete.
				go a.onFail()
			}
			a.cond.Broadcast()
			a.mu.Unlock()
			time.Sleep(wait)
			wait = min(2*wait, writeRetry)
			a.mu.Lock()
			continue
		}
		if a.err != nil {
			a.log.Info("raft log writable again")
		}
		a.err, wait = nil, 50*time.Millisecond
		a.pending = a.pending[len(batch):]
		a.durable.Store(batch[len(batch)-1].Index)
		a.cond.Broadcast()
	}
}

// drainLocked waits until everything queued when it was called is written
// (entries queued meanwhile may still be queued: under steady load the
// queue is seldom empty). It gives up with the writer's error while
// writes fail, and once the log is closed. a.mu is held.
func (a *asyncLog) drainLocked() error {
	if a.closed {
		return errLogClosed
	}
	n := len(a.pending)
	if n == 0 {
		return nil
	}
	// The writer takes entries off the queue once they are written.
	target := a.pending[n-1].Index
	for len(a.pending) > 0 && a.pending[0].Index <= target {
		switch {
		case a.err != nil:
			return fmt.Errorf("raftnode: earlier raft log entries not written: %w", a.err)
		case a.closed:
			return errLogClosed
		}
		a.cond.Wait()
	}
	return nil
}

// waitDurable waits until entry idx is on disk here. It reports false
// only once the log is closed and its writer done with idx still not on
// disk; from then on it reports false for every later entry too, so that
// the state machine, which skips what is refused, never applies an entry
// after skipping an earlier one.
func (a *asyncLog) waitDurable(idx uint64) bool {
	if !a.refused.Load() && a.durable.Load() >= idx {
		return true
	}
	a.mu.Lock()
	for a.durable.Load() < idx && !a.closed {
		if len(a.pending) == 0 {
			a.mu.Unlock()
			// Every entry reaches the state machine after StoreLogs,
			// which made it durable or queued it.
			panic(fmt.Sprintf("raftnode: entry %d is applied but neither on disk (%d) nor queued", idx, a.durable.Load()))
		}
		a.cond.Wait()
	}
	a.mu.Unlock()
	if a.durable.Load() >= idx && !a.refused.Load() {
		return true
	}
	<-a.done // closed: the writer has done what it could
	if a.refused.Load() || a.durable.Load() < idx {
		a.refused.Store(true)
		return false
	}
	return true
}

// close stops the writer after it has written what it can, and ends every
// wait. Raft must not call the log afterwards.
func (a *asyncLog) close() {
	a.mu.Lock()
	a.closed = true
	a.cond.Broadcast()
	a.mu.Unlock()
	<-a.done
}

// FirstIndex implements raft.LogStore.
func (a *asyncLog) FirstIndex() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.drainLocked(); err != nil {
		return 0, err
	}
	return a.inner.FirstIndex()
}

// LastIndex implements raft.LogStore.
func (a *asyncLog) LastIndex() (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.pending); n > 0 {
		return a.pending[n-1].Index, nil
	}
	return a.inner.LastIndex()
}

// GetLog implements raft.LogStore: a queued entry is read from the queue.
func (a *asyncLog) GetLog(index uint64, log *raft.Log) error {
	a.mu.Lock()
	if n := len(a.pending); n > 0 && index >= a.pending[0].Index && index <= a.pending[n-1].Index {
		*log = *a.pending[index-a.pending[0].Index]
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	return a.inner.GetLog(index, log)
}

// StoreLog implements raft.LogStore.
func (a *asyncLog) StoreLog(log *raft.Log) error { return a.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: queued while this node leads,
// written before it returns otherwise.
func (a *asyncLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return errLogClosed
	case a.err != nil:
		// Refused, so that a leader that cannot write steps down.
		return fmt.Errorf("raftnode: raft log not writable: %w", a.err)
	}
	if a.isLeader() && onlyCommands(logs) {
		if n := len(a.pending); n > 0 && logs[0].Index != a.pending[n-1].Index+1 {
			return fmt.Errorf("raftnode: raft log entry %d queued after %d", logs[0].Index, a.pending[n-1].Index)
		}
		a.pending = append(a.pending, logs...)
		a.cond.Broadcast()
		return nil
	}
	if err := a.drainLocked(); err != nil {
		return err
	}
	if err := a.inner.StoreLogs(logs); err != nil {
		return err
	}
	a.durable.Store(logs[len(logs)-1].Index)
	return nil
}

// onlyCommands reports whether logs are all commands. Other entries (a
// configuration change above all) are written before StoreLogs returns
// even on the leader: Raft acts on a configuration entry as soon as it is
// appended and starts the next change once it counts as committed, so its
// copy on the leader must be on disk by then, as Raft assumes.
func onlyCommands(logs []*raft.Log) bool {
	for _, l := range logs {
		if l.Type != raft.LogCommand {
			return false
		}
	}
	return true
}

// DeleteRange implements raft.LogStore, after the queue has drained. A
// delete of the log's newest entries (a follower dropping entries that
// conflict with its leader's) lowers the durable index below them.
func (a *asyncLog) DeleteRange(min, max uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.drainLocked(); err != nil {
		return err
	}
	last, err := a.inner.LastIndex()
	if err != nil {
		return err
	}
	if err := a.inner.DeleteRange(min, max); err != nil {
		return err
	}
	if max >= last && a.durable.Load() >= min {
		a.durable.Store(min - 1)
	}
	return nil
}

// clampTransport sends no follower a commit index past the entries the
// leader has on disk (see asyncLog).
type clampTransport struct {
	*raft.NetworkTransport
	durable func() uint64
}

func (t *clampTransport) clamp(args *raft.AppendEntriesRequest) {
	if d := t.durable(); args.LeaderCommitIndex > d {
		args.LeaderCommitIndex = d
	}
}

// AppendEntries implements raft.Transport.
func (t *clampTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.clamp(args)
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline implements raft.Transport.
func (t *clampTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &clampPipeline{AppendPipeline: p, t: t}, nil
}

type clampPipeline struct {
	raft.AppendPipeline
	t *clampTransport
}

// AppendEntries implements raft.AppendPipeline.
func (p *clampPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.t.clamp(args)
	return p.AppendPipeline.AppendEntries(args, resp)
}

// gatedFSM applies an entry only once it is on this node's disk (see
// asyncLog). If the log closes first (the node is shutting down) the
// entries are not applied and their writes' outcome is unknown.
type gatedFSM struct {
	raft.BatchingFSM
	log *asyncLog
}

// Apply implements raft.FSM.
func (f *gatedFSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// Snapshot implements raft.FSM. Once an entry has been refused the state
// machine is behind what Raft thinks it applied, so no snapshot may be
// taken of it.
func (f *gatedFSM) Snapshot() (raft.FSMSnapshot, error) {
	if f.log.refused.Load() {
		return nil, errLogClosed
	}
	return f.BatchingFSM.Snapshot()
}

// ApplyBatch implements raft.BatchingFSM.
func (f *gatedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	if n := len(logs); n > 0 && !f.log.waitDurable(logs[n-1].Index) {
		out := make([]interface{}, n)
		for i := range out {
			out[i] = &store.Result{Err: ErrUnknownOutcome}
		}
		return out
	}
	return f.BatchingFSM.ApplyBatch(logs)
}
