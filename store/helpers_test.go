package store

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// testStore wraps a Store opened on a temp dir with helpers that apply
// commands at the next Raft index.
type testStore struct {
	*Store
	t    testing.TB
	path string
}

// logWriter sends a store's logs to t.Log until the test ends.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mustOpenStore opens a fresh store in t.TempDir and closes it at cleanup.
func mustOpenStore(t testing.TB) *testStore {
	t.Helper()
	return mustOpenStoreAt(t, filepath.Join(t.TempDir(), "cairn.db"))
}

// mustOpenStoreAt opens the store at path and closes it at cleanup.
func mustOpenStoreAt(t testing.TB, path string) *testStore {
	t.Helper()
	cfg := DefaultConfig(path)
	cfg.NoSync = true
	cfg.Logger = testLogger(t)
	return mustOpenStoreConfig(t, cfg)
}

func mustOpenStoreConfig(t testing.TB, cfg Config) *testStore {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg.Path, err)
	}
	t.Cleanup(func() { s.Close() })
	return &testStore{Store: s, t: t, path: cfg.Path}
}

// applyRaw applies data at the next index and returns its result.
func (ts *testStore) applyRaw(data []byte) *Result {
	ts.t.Helper()
	idx := ts.AppliedIndex() + 1
	rs := ts.Apply([]Entry{{Index: idx, Data: data}})
	if len(rs) != 1 {
		ts.t.Fatalf("Apply returned %d results for 1 entry", len(rs))
	}
	if rs[0] == nil {
		ts.t.Fatalf("Apply at index %d returned a nil result", idx)
	}
	if got := ts.AppliedIndex(); got != idx {
		ts.t.Fatalf("AppliedIndex = %d after applying index %d", got, idx)
	}
	return rs[0]
}

// apply encodes cmd, applies it at the next index and fails the test if
// the command could not be applied at all.
func (ts *testStore) apply(cmd *Command) *Result {
	ts.t.Helper()
	r := ts.applyRaw(cmd.Encode())
	if r.Err != nil {
		msg := r.Err.Error()
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		ts.t.Fatalf("apply of op %d: %s", cmd.Op, msg)
	}
	return r
}

// put writes key unconditionally and returns the new revision.
func (ts *testStore) put(key, value string) int64 {
	ts.t.Helper()
	r := ts.apply(withNow(NewPut(key, []byte(value), -1, 0)))
	if !r.Succeeded {
		ts.t.Fatalf("put %q: not succeeded: %+v", key, r)
	}
	return r.Revision
}

// mustGet returns key's KV, failing the test if it is missing.
func (ts *testStore) mustGet(key string) KV {
	ts.t.Helper()
	kv, _, err := ts.Get(key)
	if err != nil {
		ts.t.Fatalf("Get(%q): %v", key, err)
	}
	return kv
}

// mustMissing fails the test unless key is reported missing.
func (ts *testStore) mustMissing(key string) {
	ts.t.Helper()
	if kv, _, err := ts.Get(key); !errors.Is(err, ErrNotFound) {
		ts.t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, kv, err)
	}
}

// dump lists every live key with its value.
func (ts *testStore) dump() []KV {
	ts.t.Helper()
	kvs, more, _, err := ts.List(ListOptions{})
	if err != nil {
		ts.t.Fatalf("List: %v", err)
	}
	if more {
		ts.t.Fatalf("List without a limit reported more")
	}
	return kvs
}

// withNow stamps cmd with the current wall clock, as a leader would.
func withNow(c *Command) *Command {
	c.Now = time.Now().UnixNano()
	return c
}

func mustEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
