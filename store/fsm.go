package store

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// FSM adapts a Store to hashicorp/raft. It is a thin layer: every call is
// handed to the store.
type FSM struct {
	s *Store
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// NewFSM returns the raft.FSM (and raft.BatchingFSM) for s.
func NewFSM(s *Store) *FSM { return &FSM{s: s} }

// Apply applies one committed entry. It returns a *Result (nil for an entry
// applied before a restart).
func (f *FSM) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries (see Store.Apply).
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	entries := make([]Entry, len(logs))
	for i, l := range logs {
		entries[i].Index = l.Index
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
			if entries[i].Data == nil {
				entries[i].Data = []byte{}
			}
		}
	}
	results := f.s.Apply(entries)
	out := make([]interface{}, len(results))
	for i, r := range results {
		out[i] = r
	}
	return out
}

// Snapshot commits what was applied and opens a consistent read
// transaction; Persist streams it while writes go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.s.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{sn: sn}, nil
}

// Restore replaces the store's whole state with the snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.s.Restore(rc)
}

type fsmSnapshot struct{ sn *Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.sn.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("store: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.sn.Release() }
