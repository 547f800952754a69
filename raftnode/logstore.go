package raftnode

import (
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairn-kv/cairn/internal/mapped"
)

// logStore is the Raft log and stable store (raft-boltdb) with a lock
// around every call that writes: bbolt remaps its file only inside a write
// transaction, so while releasePages holds the lock for writing, the
// mapping of raft.db stays where /proc/self/maps says it is and its pages
// can be dropped (MADV_DONTNEED) safely. Writes share the lock, so they
// never wait on one another for it.
type logStore struct {
	*raftboltdb.BoltStore
	path string
	mu   sync.RWMutex
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.BoltStore.StoreLog(l)
}

// StoreLogs implements raft.LogStore.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.BoltStore.StoreLogs(logs)
}

// DeleteRange implements raft.LogStore.
func (s *logStore) DeleteRange(min, max uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.BoltStore.DeleteRange(min, max)
}

// Set implements raft.StableStore.
func (s *logStore) Set(k, v []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.BoltStore.Set(k, v)
}

// SetUint64 implements raft.StableStore.
func (s *logStore) SetUint64(k []byte, v uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.BoltStore.SetUint64(k, v)
}

// releasePages drops this process's resident pages of raft.db's mapping
// (they stay in the page cache, so a restart still reads the file from
// memory), with writes held off meanwhile.
func (s *logStore) releasePages() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mapped.Release(s.path)
}

// Close closes the store; it waits for a release of its pages in progress,
// as bbolt unmaps the file.
func (s *logStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.BoltStore.Close()
}
