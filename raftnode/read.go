package raftnode

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-kv/cairn/store"
)

// watchLeadership follows leadership changes. On gaining leadership it
// commits a barrier, so that reads served by this leader include every
// entry of earlier terms, and runs the TTL reaper while it leads.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	var stopReaper context.CancelFunc
	for {
		select {
		case <-n.ctx.Done():
			if stopReaper != nil {
				stopReaper()
			}
			return
		case leader := <-n.notifyCh:
			epoch := n.epoch.Add(1)
			n.setReadReady(0)
			if stopReaper != nil {
				stopReaper()
				stopReaper = nil
			}
			if !leader {
				n.log.Info("lost leadership")
				continue
			}
			n.log.Info("became leader")
			var ctx context.Context
			ctx, stopReaper = context.WithCancel(n.ctx)
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				for ctx.Err() == nil {
					if err := futureError(ctx, n.raft.Barrier(5*time.Second)); err == nil {
						if n.epoch.Load() == epoch {
							n.setReadReady(epoch)
						}
						n.reapExpired(ctx)
						return
					}
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}()
		}
	}
}

// futureError waits for f's outcome, or for ctx to end. hashicorp/raft
// answers every future its loops take, but one still in its apply queue
// (buffered, with BatchApplyCh) when it shuts down is never answered:
// waiting on such a barrier held Node.Shutdown forever once in the tests.
// The goroutine left waiting on an unanswered future is the price.
func futureError(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) setReadReady(epoch uint64) {
	n.readyMu.Lock()
	n.readReady.Store(epoch)
	close(n.readyCh)
	n.readyCh = make(chan struct{})
	n.readyMu.Unlock()
}

// waitLeaderReady waits until this node leads and has committed its
// barrier for the current leadership.
func (n *Node) waitLeaderReady(ctx context.Context) error {
	for {
		n.readyMu.Lock()
		ch := n.readyCh
		ready := n.readReady.Load()
		n.readyMu.Unlock()
		if !n.IsLeader() {
			return ErrNotLeader
		}
		if ready != 0 && ready == n.epoch.Load() {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ErrTimeout
		}
	}
}

// ReadIndex returns an index such that a read served from the store once it
// has applied that index is linearizable: the commit index, taken before a
// quorum confirms this node is still the leader. Concurrent callers share
// quorum rounds. It fails with ErrNotLeader on a follower.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := n.waitLeaderReady(ctx); err != nil {
		return 0, err
	}
	idx := n.raft.CommitIndex()
	if err := n.verify.wait(ctx); err != nil {
		return 0, err
	}
	return idx, nil
}

// LeaderRead waits, on the leader, until every entry of earlier terms is
// applied: reads after it see all acknowledged writes unless this node has
// lost leadership without knowing yet (no quorum round is made).
func (n *Node) LeaderRead(ctx context.Context) error {
	return n.waitLeaderReady(ctx)
}

// WaitApplied waits until the store reflects every log entry up to index.
// Raft's applied index counts entries the store never sees (no-ops,
// barriers), and runs ahead of the store while a batch is being applied,
// so both are checked: once Raft has handed index over, any entries between
// the store's index and it must be of a kind the store does not apply.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.store.Changed()
		if n.appliedThrough(index) {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ErrTimeout
		case <-n.ctx.Done():
			return ErrShutdown
		}
	}
}

// appliedThrough reports whether the store reflects every entry up to
// index (see WaitApplied).
func (n *Node) appliedThrough(index uint64) bool {
	have := n.store.AppliedIndex()
	if have >= index {
		return true
	}
	return n.raft.AppliedIndex() >= index && n.onlyNonFSM(have+1, index)
}

// onlyNonFSM reports whether log entries from..to are all of kinds the
// store never applies.
func (n *Node) onlyNonFSM(from, to uint64) bool {
	if to-from > 64 {
		return false
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		if err := n.logs.GetLog(i, &l); err != nil {
			continue // compacted, so already applied
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// verifier shares VerifyLeader quorum rounds among concurrent readers. A
// reader always waits for a round that starts after it arrived.
type verifier struct {
	n       *Node
	mu      sync.Mutex
	waiting []chan error
	running bool
}

func (v *verifier) wait(ctx context.Context) error {
	ch := make(chan error, 1)
	v.mu.Lock()
	v.waiting = append(v.waiting, ch)
	if !v.running {
		v.running = true
		go v.loop()
	}
	v.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ErrTimeout
	}
}

func (v *verifier) loop() {
	for {
		v.mu.Lock()
		batch := v.waiting
		v.waiting = nil
		if len(batch) == 0 {
			v.running = false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		err := translate(v.n.raft.VerifyLeader().Error())
		for _, ch := range batch {
			ch <- err
		}
	}
}

// reapExpired runs on the leader: it finds keys whose TTL has passed and
// proposes their deletion, so every node deletes them at the same index.
func (n *Node) reapExpired(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys, err := n.store.Expired(time.Now().UnixNano(), 512)
		if err != nil || len(keys) == 0 {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = n.Apply(actx, &store.Command{Op: store.OpExpire, Expire: keys})
		cancel()
		if err != nil {
			n.log.Debug("expire failed", "keys", len(keys), "err", err)
		}
	}
}
