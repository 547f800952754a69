package raftnode

import (
	"bytes"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/cairn-kv/cairn/internal/mapped"
)

func openLogStore(t *testing.T) *logStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	bs, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &logStore{BoltStore: bs, path: path}
	t.Cleanup(func() { s.Close() })
	return s
}

func logAt(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 4096)}
}

func checkLogs(t *testing.T, s *logStore, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if want := logAt(i); l.Index != i || !bytes.Equal(l.Data, want.Data) {
			t.Fatalf("log %d reads back index %d, %d bytes", i, l.Index, len(l.Data))
		}
	}
}

// releasePages drops the resident pages that appends and reads left in
// raft.db's mapping, and the log reads back whole.
func TestLogStoreReleasePages(t *testing.T) {
	s := openLogStore(t)
	for i := uint64(1); i <= 2000; i += 100 {
		batch := make([]*raft.Log, 0, 100)
		for j := i; j < i+100; j++ {
			batch = append(batch, logAt(j))
		}
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	checkLogs(t, s, 1, 2000)
	before, err := mapped.Resident(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if before < 4<<20 {
		t.Fatalf("after reading 8 MiB of log %d bytes of raft.db are resident; want most of it", before)
	}
	if _, err := s.releasePages(); err != nil {
		t.Fatal(err)
	}
	after, err := mapped.Resident(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if after > before/4 {
		t.Fatalf("resident %d bytes after releasePages, %d before", after, before)
	}
	checkLogs(t, s, 1, 2000)
}

// Releases while appends grow the file (and bbolt remaps it) lose nothing.
func TestLogStoreReleaseDuringAppends(t *testing.T) {
	s := openLogStore(t)
	const n = 3000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= n; i += 10 {
			batch := make([]*raft.Log, 0, 10)
			for j := i; j < i+10; j++ {
				batch = append(batch, logAt(j))
			}
			if err := s.StoreLogs(batch); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for releases := 0; ; releases++ {
		select {
		case <-done:
			if releases == 0 {
				t.Fatal("no release ran during the appends")
			}
			checkLogs(t, s, 1, n)
			return
		default:
		}
		if _, err := s.releasePages(); err != nil {
			t.Fatal(err)
		}
	}
}
