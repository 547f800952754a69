package store

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func fsmResult(t testing.TB, v interface{}) *Result {
	t.Helper()
	r, ok := v.(*Result)
	if !ok {
		t.Fatalf("FSM answered %T, want *Result", v)
	}
	return r
}

func TestFSMApply(t *testing.T) {
	s := mustOpenStore(t)
	f := NewFSM(s.Store)
	put := withNow(NewPut("k", []byte("v"), -1, 0)).Encode()

	r := fsmResult(t, f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: put}))
	if r == nil || !r.Succeeded || r.Revision != 1 {
		t.Fatalf("apply: %+v", r)
	}
	// Configuration and no-op entries only move the applied index.
	for i, typ := range []raft.LogType{raft.LogConfiguration, raft.LogNoop, raft.LogBarrier} {
		idx := uint64(2 + i)
		if r := fsmResult(t, f.Apply(&raft.Log{Index: idx, Type: typ, Data: []byte("ignored")})); r != nil {
			t.Fatalf("%v entry answered %+v", typ, r)
		}
		if s.AppliedIndex() != idx || s.Revision() != 1 {
			t.Fatalf("after %v: index %d revision %d", typ, s.AppliedIndex(), s.Revision())
		}
	}
	// A command entry with no data is an invalid command, not a config
	// change.
	r = fsmResult(t, f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand}))
	if r == nil || !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("empty command: %+v", r)
	}
	// Replays answer nil.
	if r := fsmResult(t, f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: put})); r != nil {
		t.Fatalf("replay answered %+v", r)
	}
	if s.AppliedIndex() != 5 || s.mustGet("k").Version != 1 {
		t.Fatalf("index %d, k %+v", s.AppliedIndex(), s.mustGet("k"))
	}
}

func TestFSMApplyBatch(t *testing.T) {
	s := mustOpenStore(t)
	f := NewFSM(s.Store)
	var logs []*raft.Log
	for i, k := range []string{"a", "b", "c"} {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: withNow(NewPut(k, []byte(k), -1, 0)).Encode()})
	}
	logs = append(logs, &raft.Log{Index: 4, Type: raft.LogConfiguration})
	logs = append(logs, &raft.Log{Index: 5, Type: raft.LogCommand, Data: []byte{9, 9}})
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("%d results for %d logs", len(out), len(logs))
	}
	for i := 0; i < 3; i++ {
		if r := fsmResult(t, out[i]); r == nil || r.Revision != int64(i+1) {
			t.Fatalf("log %d: %+v", i+1, r)
		}
	}
	if r := fsmResult(t, out[3]); r != nil {
		t.Fatalf("config log: %+v", r)
	}
	if r := fsmResult(t, out[4]); r == nil || r.Err == nil {
		t.Fatalf("garbage log: %+v", r)
	}
	mustEqual(t, "keys", keysOf(s.dump()), []string{"a", "b", "c"})
}

func hcLogger(t testing.TB) hclog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Output: w, Level: hclog.Info})
}

// TestFSMSnapshotFileStore goes through hashicorp/raft's file snapshot
// store: Snapshot, more writes, Persist into a sink, Open, Restore.
func TestFSMSnapshotFileStore(t *testing.T) {
	src := mustOpenStore(t)
	fillStore(t, src, "a", 100)
	want := stateOf(t, src)
	f := NewFSM(src.Store)

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Persist runs beside Apply.
	fillStore(t, src, "b", 100)

	snaps, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, hcLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, want.Index, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()

	metas, err := snaps.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("List = %+v, %v", metas, err)
	}
	meta, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Index != want.Index || meta.Size == 0 {
		t.Fatalf("meta = %+v", meta)
	}

	dst := mustOpenStore(t)
	fillStore(t, dst, "z", 10)
	if err := NewFSM(dst.Store).Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	mustEqual(t, "restored state", stateOf(t, dst), want)
	if err := dst.Check(); err != nil {
		t.Fatal(err)
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

func TestFSMRestoreClosesReader(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	for name, r := range map[string]io.Reader{
		"garbage": strings.NewReader("garbage"),
		"good":    bytes.NewReader(snapshotBytes(t, mustOpenStore(t))),
	} {
		t.Run(name, func(t *testing.T) {
			rc := &closeTracker{Reader: r}
			err := NewFSM(s.Store).Restore(rc)
			if (err == nil) != (name == "good") {
				t.Fatalf("Restore: %v", err)
			}
			if !rc.closed {
				t.Fatal("Restore did not close the reader")
			}
		})
	}
}

// failSink is a raft.SnapshotSink whose writes fail.
type failSink struct {
	cancelled, closed bool
}

func (s *failSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }
func (s *failSink) Close() error              { s.closed = true; return nil }
func (s *failSink) ID() string                { return "fail" }
func (s *failSink) Cancel() error             { s.cancelled = true; return nil }

func TestFSMPersistFailureCancels(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	snap, err := NewFSM(s.Store).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &failSink{}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist into a failing sink succeeded")
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink cancelled %v closed %v; want Cancel and no Close", sink.cancelled, sink.closed)
	}
}

// TestFSMSnapshotReleaseUnblocksClose: a released snapshot does not hold
// the store open.
func TestFSMSnapshotReleaseUnblocksClose(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	snap, err := NewFSM(s.Store).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.Release()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked after the snapshot was released")
	}
}
