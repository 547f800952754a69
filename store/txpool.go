package store

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// txPool keeps read transactions of the last commit for readers to reuse,
// one reader at a time each, so that a read need not begin (and end) a
// bbolt transaction of its own. It is tied to the overlay: the overlay
// holds what changed since the last commit, so a pooled transaction is
// only good until the next commit empties the overlay. Around a commit the
// pool is closed and emptied (an idle transaction would hold bbolt's mmap
// lock, which a commit that grows the file waits for), and reopened in a
// new epoch once the overlay is empty; a transaction from an older epoch is
// rolled back instead of pooled.
type txPool struct {
	mu    sync.Mutex
	epoch uint64
	open  bool
	idle  []*bolt.Tx
}

// maxIdleTx bounds the pooled transactions.
const maxIdleTx = 16

// get returns a pooled transaction and the epoch to give back to put; tx
// is nil when there is none (the caller begins one). The caller holds the
// overlay's read lock, so the epoch matches the overlay it reads.
func (p *txPool) get() (*bolt.Tx, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.open || len(p.idle) == 0 {
		return nil, p.epoch
	}
	tx := p.idle[len(p.idle)-1]
	p.idle = p.idle[:len(p.idle)-1]
	return tx, p.epoch
}

// put gives tx back: pooled if the pool is open in the same epoch and has
// room, else rolled back.
func (p *txPool) put(tx *bolt.Tx, epoch uint64) {
	p.mu.Lock()
	if p.open && p.epoch == epoch && len(p.idle) < maxIdleTx {
		p.idle = append(p.idle, tx)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = tx.Rollback()
}

// close empties the pool and keeps it closed until reopen.
func (p *txPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.open = false
	p.epoch++
	p.mu.Unlock()
	for _, tx := range idle {
		_ = tx.Rollback()
	}
}

// reopen opens the pool in a new epoch.
func (p *txPool) reopen() {
	p.mu.Lock()
	p.epoch++
	p.open = true
	p.mu.Unlock()
}
