package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cairn-kv/cairn/internal/mapped"
)

// longInterval keeps applied entries uncommitted for the whole test.
const longInterval = time.Hour

// openWithInterval opens a NoSync store in a temp dir with the given
// CommitInterval.
func openWithInterval(t testing.TB, interval time.Duration) *testStore {
	t.Helper()
	return openWithIntervalAt(t, filepath.Join(t.TempDir(), "cairn.db"), interval)
}

func openWithIntervalAt(t testing.TB, path string, interval time.Duration) *testStore {
	t.Helper()
	cfg := DefaultConfig(path)
	cfg.NoSync = true
	cfg.CommitInterval = interval
	cfg.Logger = testLogger(t)
	return mustOpenStoreConfig(t, cfg)
}

// committed returns the applied index and revision of the last bbolt
// commit: what the file holds.
func committed(t testing.TB, s *testStore) (uint64, int64) {
	t.Helper()
	var idx uint64
	var rev int64
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		idx = getU64(meta.Get(metaApplied))
		rev = int64(getU64(meta.Get(metaRevision)))
		return nil
	})
	if err != nil {
		t.Fatalf("view: %v", err)
	}
	return idx, rev
}

// committedHas reports whether the last commit has a record for key.
func committedHas(t testing.TB, s *testStore, key string) bool {
	t.Helper()
	var ok bool
	if err := s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketKV).Get([]byte(key)) != nil
		return nil
	}); err != nil {
		t.Fatalf("view: %v", err)
	}
	return ok
}

func overlayLen(s *testStore) int {
	s.ovMu.RLock()
	defer s.ovMu.RUnlock()
	return len(s.ov)
}

// cmdLog builds Raft entries at consecutive indexes from 1, each command
// stamped with one leader clock unless it has its own.
type cmdLog struct {
	now     int64
	entries []Entry
}

func (l *cmdLog) add(c *Command) {
	if c.Now == 0 {
		c.Now = l.now
	}
	l.addRaw(c.Encode())
}

func (l *cmdLog) addRaw(data []byte) {
	l.entries = append(l.entries, Entry{Index: uint64(len(l.entries) + 1), Data: data})
}

func (l *cmdLog) put(k, v string) { l.add(NewPut(k, []byte(v), -1, 0)) }

// applyEntries applies entries in batches of batch and returns their
// results, checking the applied index after each batch.
func applyEntries(t testing.TB, s *testStore, entries []Entry, batch int) []*Result {
	t.Helper()
	var out []*Result
	for len(entries) > 0 {
		n := min(batch, len(entries))
		rs := s.Apply(entries[:n])
		if len(rs) != n {
			t.Fatalf("Apply returned %d results for %d entries", len(rs), n)
		}
		if last := entries[n-1].Index; s.AppliedIndex() < last {
			t.Fatalf("AppliedIndex %d after applying up to %d", s.AppliedIndex(), last)
		}
		out = append(out, rs...)
		entries = entries[n:]
	}
	return out
}

type getResult struct {
	KV  KV
	Rev int64
	Err string
}

type listResult struct {
	Opts ListOptions
	KVs  []KV
	More bool
	Rev  int64
	Err  string
}

// readResults is everything a reader can observe of a store.
type readResults struct {
	Gets     map[string]getResult
	Lists    []listResult
	Revision int64
	Index    uint64
	Members  []Member
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// listMatrix is many ListOptions: prefixes, After before, inside and past
// them, limits around the sizes, with and without values.
func listMatrix() []ListOptions {
	var out []ListOptions
	for _, p := range []string{"", "a/", "a/0", "a/1", "b/", "c", "d/", "ttl/", "zz"} {
		for _, after := range []string{"", "0", "a/03", "a/06", "a/08", "b/y", "d/", "zzz"} {
			for _, limit := range []int{0, 1, 2, 3, 5, 20} {
				for _, keysOnly := range []bool{false, true} {
					out = append(out, ListOptions{Prefix: p, After: after, Limit: limit, KeysOnly: keysOnly})
				}
			}
		}
	}
	return out
}

func readAll(t testing.TB, s *testStore, keys []string) readResults {
	t.Helper()
	r := readResults{Gets: map[string]getResult{}, Revision: s.Revision(), Index: s.AppliedIndex(), Members: s.Members()}
	for _, k := range keys {
		kv, rev, err := s.Get(k)
		r.Gets[k] = getResult{kv, rev, errString(err)}
	}
	for _, o := range listMatrix() {
		kvs, more, rev, err := s.List(o)
		r.Lists = append(r.Lists, listResult{o, kvs, more, rev, errString(err)})
	}
	return r
}

// wantList is what List(opts) must return given the full listing.
func wantList(full []KV, opts ListOptions) ([]KV, bool) {
	var out []KV
	for _, kv := range full {
		if !strings.HasPrefix(kv.Key, opts.Prefix) || (opts.After != "" && kv.Key <= opts.After) {
			continue
		}
		if opts.KeysOnly {
			kv.Value = nil
		}
		out = append(out, kv)
	}
	if opts.Limit > 0 && len(out) > opts.Limit {
		return out[:opts.Limit], true
	}
	return out, false
}

// Reads over the overlay equal reads after Flush and reads of a store committing every Apply.
func TestOverlayReadsEqualCommittedReads(t *testing.T) {
	now := time.Now().UnixNano()
	hour := int64(time.Hour)
	l := &cmdLog{now: now}
	past := func(k string) *Command { // live when applied, expired now
		c := NewPut(k, []byte("old"), -1, now-hour)
		c.Now = now - 2*hour
		return c
	}

	// Base, committed before the rest.
	for i := 0; i < 20; i += 2 {
		l.put(fmt.Sprintf("a/%02d", i), "base")
	}
	for _, k := range []string{"b/x", "b/y", "c", "d/1", "d/2", "d/3", "z"} {
		l.put(k, "base-"+k)
	}
	l.add(NewPut("ttl/live", []byte("t"), -1, now+hour))
	l.add(past("ttl/past"))
	idem := NewPut("idem/1", []byte("i"), -1, 0)
	idem.IdempotencyKey = "k1"
	l.add(idem)
	l.add(&Command{Op: OpSetMember, Member: Member{ID: "n1", RaftAddr: "r1", HTTPAddr: "h1"}})
	nBase := len(l.entries)

	// Applied on top, left uncommitted.
	for i := 1; i < 20; i += 2 {
		l.put(fmt.Sprintf("a/%02d", i), "new")
	}
	l.put("a/04", "over")
	l.put("a/10", "over")
	l.add(NewDelete("a/06", false, -1))
	l.add(NewDelete("c", false, -1))
	l.add(NewDelete("a/08", false, -1))
	l.put("a/08", "again")
	l.put("d/4", "new")
	l.add(NewDelete("d/", true, -1))
	l.put("d/2", "back")
	l.add(past("ttl/ov-past"))
	l.add(NewPut("ttl/ov-live", []byte("t"), -1, now+hour))
	l.put("ttl/live", "no ttl now")
	l.put("b/z", "new")
	l.add(NewPut("b/x", []byte("cas fails"), 999999, 0))
	idem2 := NewPut("idem/1", []byte("retry"), -1, 0)
	idem2.IdempotencyKey = "k1"
	l.add(idem2)
	l.add(NewDelete("ttl/past", false, -1)) // expired: left to OpExpire
	l.add(&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{{Type: OpGet, Key: "a/", Prefix: true, Limit: 3}, {Type: OpPut, Key: "e", Value: []byte("txn")}}}})
	p1, p2 := NewPut("f/1", []byte("b"), -1, 0), NewPut("f/2", []byte("b"), -1, 0)
	p1.Now, p2.Now = now, now
	l.addRaw(EncodeBatch([][]byte{p1.Encode(), p2.Encode()}))
	l.entries = append(l.entries, Entry{Index: uint64(len(l.entries) + 1)}) // configuration change
	l.add(&Command{Op: OpSetMember, Member: Member{ID: "n2", RaftAddr: "r2", HTTPAddr: "h2"}})

	lazy := openWithInterval(t, longInterval)
	eager := openWithInterval(t, -1)
	lazyRes := applyEntries(t, lazy, l.entries[:nBase], 4)
	eagerRes := applyEntries(t, eager, l.entries[:nBase], 4)
	lazy.Flush()
	lazyRes = append(lazyRes, applyEntries(t, lazy, l.entries[nBase:], 3)...)
	eagerRes = append(eagerRes, applyEntries(t, eager, l.entries[nBase:], 3)...)
	mustEqual(t, "results of lazy and eager stores", lazyRes, eagerRes)

	if idx, _ := committed(t, lazy); idx != uint64(nBase) || overlayLen(lazy) == 0 {
		t.Fatalf("committed index %d, overlay %d keys; want %d and a non-empty overlay", idx, overlayLen(lazy), nBase)
	}
	wantKeys := []string{"a/00", "a/01", "a/02", "a/03", "a/04", "a/05", "a/07", "a/08", "a/09", "a/10", "a/11",
		"a/12", "a/13", "a/14", "a/15", "a/16", "a/17", "a/18", "a/19", "b/x", "b/y", "b/z", "d/2", "e", "f/1", "f/2",
		"idem/1", "ttl/live", "ttl/ov-live", "z"}
	full := lazy.dump()
	mustEqual(t, "keys over the overlay", keysOf(full), wantKeys)
	for k, v := range map[string]string{"a/04": "over", "a/08": "again", "d/2": "back", "idem/1": "i", "b/x": "base-b/x", "ttl/live": "no ttl now"} {
		if got := lazy.mustGet(k); string(got.Value) != v {
			t.Errorf("%s = %q, want %q", k, got.Value, v)
		}
	}

	keys := append([]string{"a/06", "c", "d/1", "d/3", "d/4", "ttl/past", "ttl/ov-past", "missing", "a", "a/", ""}, wantKeys...)
	before := readAll(t, lazy, keys)
	for _, lr := range before.Lists {
		kvs, more := wantList(full, lr.Opts)
		if lr.Err != "" || !equalKVs(lr.KVs, kvs) || lr.More != more || lr.Rev != before.Revision {
			t.Fatalf("List(%+v) over the overlay = %v more %v rev %d err %q; want %v more %v rev %d",
				lr.Opts, keysOf(lr.KVs), lr.More, lr.Rev, lr.Err, keysOf(kvs), more, before.Revision)
		}
	}
	mustEqual(t, "eager store reads", readAll(t, eager, keys), before)

	lazy.Flush()
	if idx, _ := committed(t, lazy); idx != lazy.AppliedIndex() || overlayLen(lazy) != 0 {
		t.Fatalf("after Flush: committed index %d (applied %d), overlay %d keys", idx, lazy.AppliedIndex(), overlayLen(lazy))
	}
	mustEqual(t, "reads after Flush", readAll(t, lazy, keys), before)

	h1, i1, err1 := lazy.Hash()
	h2, i2, err2 := eager.Hash()
	if err1 != nil || err2 != nil || h1 != h2 || i1 != i2 || i1 != uint64(len(l.entries)) {
		t.Fatalf("Hash: lazy %x@%d (%v), eager %x@%d (%v), want equal at %d", h1, i1, err1, h2, i2, err2, len(l.entries))
	}
}

// equalKVs compares listings, treating nil and empty alike.
func equalKVs(a, b []KV) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// mixedLog appends n varied commands: puts, deletes, prefix deletes,
// batches, idempotent retries, TTLs and member changes.
func mixedLog(l *cmdLog, n int) {
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("x/%d/%02d", i%3, i%17)
		switch i % 7 {
		case 0, 1:
			l.put(k, fmt.Sprint("v", i))
		case 2:
			l.add(NewDelete(k, false, -1))
		case 3:
			c := NewPut(k, []byte(fmt.Sprint("idem", i)), -1, 0)
			c.IdempotencyKey = fmt.Sprint("id-", i/14) // every other one is a retry
			l.add(c)
		case 4:
			a, b := NewPut(k+"/a", []byte("b"), -1, 0), NewPut(k+"/b", []byte("b"), -1, l.now+int64(i)*int64(time.Hour))
			a.Now, b.Now = l.now, l.now
			l.addRaw(EncodeBatch([][]byte{a.Encode(), b.Encode()}))
		case 5:
			l.add(NewDelete(fmt.Sprintf("x/%d/1", i%3), true, -1))
		case 6:
			l.add(&Command{Op: OpSetMember, Member: Member{ID: fmt.Sprint("n", i%4), RaftAddr: fmt.Sprint("r", i)}})
		}
	}
}

// copyFile copies src to dst with io.Copy, as the file would be found
// after the process was killed.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// A killed store's file holds exactly the last commit; replaying the log repairs it.
func TestCrashLosesOnlyUncommitted(t *testing.T) {
	const n, m = 40, 30
	l := &cmdLog{now: time.Now().UnixNano()}
	mixedLog(l, n+m)
	s := openWithInterval(t, longInterval)
	orig := applyEntries(t, s, l.entries[:n], 5)
	s.Flush()
	atFlush := stateOf(t, s)
	orig = append(orig, applyEntries(t, s, l.entries[n:], 5)...)
	if idx, _ := committed(t, s); idx != n || s.AppliedIndex() != n+m {
		t.Fatalf("committed index %d, applied %d; want %d, %d", idx, s.AppliedIndex(), n, n+m)
	}

	// Copied while the store is open; no commit runs meanwhile (two could tear the copy).
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyFile(t, s.path, crashed)
	c := openWithIntervalAt(t, crashed, longInterval)
	mustEqual(t, "state of the crashed copy", stateOf(t, c), atFlush)
	if err := c.Check(); err != nil {
		t.Fatalf("Check of the crashed copy: %v", err)
	}

	// Raft replays the log from before the commit, in other batches.
	replay := applyEntries(t, c, l.entries, 7)
	for i, r := range replay[:n] {
		if r != nil {
			t.Fatalf("replayed entry %d (already committed) answered %+v", i+1, r)
		}
	}
	mustEqual(t, "results of the replayed entries", replay[n:], orig[n:])
	mustEqual(t, "state after replay", stateOf(t, c), stateOf(t, s))
	h1, i1, err1 := s.Hash()
	h2, i2, err2 := c.Hash()
	if err1 != nil || err2 != nil || h1 != h2 || i1 != i2 || i1 != n+m {
		t.Fatalf("Hash: original %x@%d (%v), replayed %x@%d (%v)", h1, i1, err1, h2, i2, err2)
	}
}

// With no further Apply, the flush loop commits once CommitInterval has passed.
func TestBackgroundFlushCommits(t *testing.T) {
	const interval = 100 * time.Millisecond
	s := openWithInterval(t, interval)
	start := time.Now()
	rev := s.put("a", "1")
	if idx, _ := committed(t, s); idx != 0 && time.Since(start) < interval {
		t.Fatalf("committed index %d right after the first Apply", idx)
	}
	eventually(t, 2*time.Second, "the background commit", func() bool {
		idx, crev := committed(t, s)
		return idx == 1 && crev == rev
	})
	if d := time.Since(start); d < interval {
		t.Fatalf("committed after %v, before CommitInterval %v", d, interval)
	}
	if !committedHas(t, s, "a") || overlayLen(s) != 0 {
		t.Fatalf("after the background commit: key in file %v, overlay %d keys", committedHas(t, s, "a"), overlayLen(s))
	}
	if kv := s.mustGet("a"); string(kv.Value) != "1" {
		t.Fatalf("a = %+v", kv)
	}
}

// CommitInterval < 0 commits inside every Apply.
func TestNegativeCommitIntervalCommitsEveryApply(t *testing.T) {
	s := openWithInterval(t, -1)
	for i := 0; i < 20; i++ {
		k := fmt.Sprint("k", i%5)
		var rev int64
		if i%4 == 3 {
			rev = s.apply(withNow(NewDelete(k, false, -1))).Revision
		} else {
			rev = s.put(k, fmt.Sprint(i))
		}
		idx, crev := committed(t, s)
		if idx != s.AppliedIndex() || crev != rev || overlayLen(s) != 0 {
			t.Fatalf("after apply %d: committed index %d rev %d, overlay %d keys; want %d, %d, empty",
				i, idx, crev, overlayLen(s), s.AppliedIndex(), rev)
		}
		if committedHas(t, s, k) != (i%4 != 3) {
			t.Fatalf("after apply %d: %s in file = %v", i, k, committedHas(t, s, k))
		}
	}
}

// Expired merges overlay and committed TTLs by expiry then key, under the limit, minus ones the overlay replaced.
func TestExpiredSeesOverlay(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).UnixNano()
	far := time.Now().Add(time.Hour).UnixNano()
	s := openWithInterval(t, longInterval)
	type ttl struct {
		key string
		at  int64
	}
	mods := map[string]int64{}
	put := func(xs ...ttl) {
		for _, x := range xs {
			c := NewPut(x.key, []byte("v"), -1, x.at)
			c.Now = t0 // live when applied
			mods[x.key] = s.apply(c).Revision
		}
	}
	put(ttl{"c1", t0 + 10}, ttl{"c2", t0 + 30}, ttl{"c3", t0 + 50}, ttl{"c4", far}, ttl{"cOver", t0 + 20},
		ttl{"cDel", t0 + 25}, ttl{"cNewTTL", t0 + 5})
	s.Flush()
	put(ttl{"cOver", 0}, ttl{"cNewTTL", t0 + 40}, ttl{"o1", t0 + 20}, ttl{"b0", t0 + 30}, ttl{"o0", t0 + 30}, ttl{"o2", t0 + 60})
	del := NewDelete("cDel", false, -1)
	del.Now = t0
	s.apply(del)
	if overlayLen(s) != 7 {
		t.Fatalf("overlay holds %d keys, want 7", overlayLen(s))
	}

	live := []ttl{{"c1", t0 + 10}, {"o1", t0 + 20}, {"b0", t0 + 30}, {"c2", t0 + 30}, {"o0", t0 + 30},
		{"cNewTTL", t0 + 40}, {"c3", t0 + 50}, {"o2", t0 + 60}, {"c4", far}}
	check := func(stage string) {
		t.Helper()
		for _, now := range []int64{t0, t0 + 10, t0 + 29, t0 + 30, t0 + 45, t0 + 55, t0 + 100, far} {
			var all []ExpireKey
			for _, x := range live {
				if x.at <= now {
					all = append(all, ExpireKey{Key: x.key, ModRevision: mods[x.key]})
				}
			}
			for limit := 0; limit <= len(all)+1; limit++ {
				got, err := s.Expired(now, limit)
				want := all[:min(limit, len(all))]
				if err != nil || (len(got)+len(want) > 0 && fmt.Sprint(got) != fmt.Sprint(want)) {
					t.Fatalf("%s: Expired(t0+%d, %d) = %v, %v; want %v", stage, now-t0, limit, got, err, want)
				}
			}
		}
	}
	check("over the overlay")
	s.Flush()
	check("after Flush")
}

// The reaper's view of the overlay holds only the keys whose TTL changed:
// none for plain writes, and it agrees with the overlay for the others
// until a commit empties both.
func TestOverlayTTLKeys(t *testing.T) {
	s := openWithInterval(t, longInterval)
	ttlKeys := func() map[string][]byte {
		s.ovMu.RLock()
		defer s.ovMu.RUnlock()
		for k, v := range s.ovTTL {
			if !bytes.Equal(s.ov[k], v) {
				t.Errorf("ovTTL[%s] differs from the overlay", k)
			}
		}
		return maps.Clone(s.ovTTL)
	}
	for i := 0; i < 50; i++ {
		s.put(fmt.Sprint("plain/", i), "v")
	}
	if n := len(ttlKeys()); n != 0 {
		t.Fatalf("%d TTL keys after plain writes, want 0", n)
	}
	far := time.Now().Add(time.Hour).UnixNano()
	s.apply(withNow(NewPut("t", []byte("v"), -1, far)))
	s.apply(withNow(NewPut("t", []byte("w"), -1, 0))) // TTL dropped: still listed, with the new record
	s.apply(withNow(NewPut("t", []byte("x"), -1, 0)))
	s.put("plain/1", "w")
	if got := ttlKeys(); len(got) != 1 || got["t"] == nil {
		t.Fatalf("TTL keys %v, want t alone", got)
	}
	s.Flush()
	if n := len(ttlKeys()); n != 0 {
		t.Fatalf("%d TTL keys after a commit, want 0", n)
	}
	s.apply(withNow(NewDelete("t", false, -1))) // deletes a key with no TTL
	if n := len(ttlKeys()); n != 0 {
		t.Fatalf("%d TTL keys after deleting a key without TTL, want 0", n)
	}
}

// Restore replaces applied-but-uncommitted state, and it never comes back.
func TestRestoreDropsUncommitted(t *testing.T) {
	a := openWithInterval(t, longInterval)
	for i := 0; i < 10; i++ {
		a.put(fmt.Sprint("shared/", i), "from a")
	}
	a.apply(&Command{Op: OpSetMember, Member: Member{ID: "a1", RaftAddr: "r"}})
	a.apply(withNow(NewDelete("shared/3", false, -1)))
	snap := snapshotBytes(t, a)
	want := stateOf(t, a)

	b := openWithInterval(t, longInterval)
	for i := 0; i < 30; i++ {
		b.put(fmt.Sprint("shared/", i%12), "from b")
	}
	b.Flush()
	for i := 0; i < 10; i++ {
		b.put(fmt.Sprint("bonly/", i), "uncommitted")
	}
	b.put("shared/1", "uncommitted")
	b.apply(withNow(NewDelete("shared/", true, -1)))
	b.apply(&Command{Op: OpSetMember, Member: Member{ID: "b1", RaftAddr: "r"}})
	if idx, _ := committed(t, b); idx >= b.AppliedIndex() || b.AppliedIndex() <= want.Index {
		t.Fatalf("setup: b committed %d, applied %d, a at %d", idx, b.AppliedIndex(), want.Index)
	}

	if err := b.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	keys := []string{"bonly/0", "bonly/9", "shared/1", "shared/3", "shared/10", "shared/11", "missing"}
	mustEqual(t, "state after Restore", stateOf(t, b), want)
	mustEqual(t, "reads after Restore", readAll(t, b, keys), readAll(t, a, keys))
	b.mustMissing("bonly/0")
	if overlayLen(b) != 0 {
		t.Fatalf("overlay holds %d keys after Restore", overlayLen(b))
	}

	// Applying on and committing brings none of it back.
	next := NewPut("after", []byte("x"), -1, 0)
	next.Now = time.Now().UnixNano()
	b.Apply([]Entry{{Index: want.Index + 1, Data: next.Encode()}})
	b.Flush()
	a.Apply([]Entry{{Index: want.Index + 1, Data: next.Encode()}})
	mustEqual(t, "state after the next entry", stateOf(t, b), stateOf(t, a))
	ha, _, _ := a.Hash()
	hb, _, _ := b.Hash()
	if ha != hb {
		t.Fatalf("Hash after the next entry: a %x, b %x", ha, hb)
	}
	path := b.path
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "state after reopen", stateOf(t, openWithIntervalAt(t, path, longInterval)), stateOf(t, a))
}

// Readers racing applies and commits see exactly the state at the revision they are given.
func TestConcurrentReadersSeeConsistentState(t *testing.T) {
	const writes, nkeys, readers = 2000, 200, 4
	s := openWithInterval(t, 5*time.Millisecond)
	key := func(j int) string { return fmt.Sprintf("k%04d", j) }
	// Write i (from 0) puts key i%nkeys at revision i+1, valued i+1.
	modAt := func(j int, rev int64) int64 {
		first := int64(j + 1)
		if rev < first {
			return 0
		}
		return first + (rev-first)/nkeys*nkeys
	}
	checkKV := func(kv KV, rev int64) error {
		j, err := strconv.Atoi(strings.TrimPrefix(kv.Key, "k"))
		if err != nil {
			return fmt.Errorf("unexpected key %q", kv.Key)
		}
		mod := modAt(j, rev)
		if kv.ModRevision != mod || string(kv.Value) != strconv.FormatInt(mod, 10) ||
			kv.CreateRevision != int64(j+1) || kv.Version != (mod-int64(j+1))/nkeys+1 {
			return fmt.Errorf("at revision %d got %+v (value %q), want mod revision %d", rev, kv, kv.Value, mod)
		}
		return nil
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the FSM
		defer wg.Done()
		defer close(done)
		wstart := time.Now()
		defer func() { t.Logf("writes took %v", time.Since(wstart)) }()
		now := time.Now().UnixNano()
		for i := 0; i < writes; {
			var batch []Entry
			for n := i%3 + 1; n > 0 && i < writes; n-- {
				c := NewPut(key(i%nkeys), []byte(strconv.Itoa(i+1)), -1, 0)
				c.Now = now
				batch = append(batch, Entry{Index: uint64(i + 1), Data: c.Encode()})
				i++
			}
			if i%100 < 3 {
				time.Sleep(time.Millisecond) // spread the writes over several commits
			}
			for _, r := range s.Apply(batch) {
				if r == nil || r.Err != nil {
					t.Errorf("Apply: %+v", r)
					return
				}
			}
		}
	}()
	wg.Add(1)
	go func() { // commits from another goroutine, as Snapshot and Hash make
		defer wg.Done()
		for n := 0; n < 200; n++ {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			s.Flush()
		}
	}()
	var reads [readers]int
	deadline := time.Now().Add(1500 * time.Millisecond)
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(r)))
			var last int64
			seen := func(rev int64) bool {
				if rev < last {
					t.Errorf("reader %d: revision went back from %d to %d", r, last, rev)
					return false
				}
				last = rev
				return true
			}
			for n := 0; n < 3000 && time.Now().Before(deadline); n++ {
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				reads[r]++
				if n%2 == 0 {
					j := rng.Intn(nkeys)
					kv, rev, err := s.Get(key(j))
					if !seen(rev) {
						return
					}
					if errors.Is(err, ErrNotFound) {
						if modAt(j, rev) != 0 {
							t.Errorf("reader %d: %s missing at revision %d", r, key(j), rev)
							return
						}
					} else if err != nil {
						t.Errorf("reader %d: Get: %v", r, err)
						return
					} else if err := checkKV(kv, rev); err != nil {
						t.Errorf("reader %d: Get: %v", r, err)
						return
					}
				} else {
					opts := ListOptions{Prefix: "k"}
					if n%4 == 1 {
						opts.After, opts.Limit = key(rng.Intn(nkeys)), 1+rng.Intn(50)
					}
					kvs, more, rev, err := s.List(opts)
					if err != nil {
						t.Errorf("reader %d: List: %v", r, err)
						return
					}
					if !seen(rev) {
						return
					}
					var want []string
					for j := 0; j < nkeys; j++ {
						if modAt(j, rev) != 0 && (opts.After == "" || key(j) > opts.After) {
							want = append(want, key(j))
						}
					}
					wantMore := opts.Limit > 0 && len(want) > opts.Limit
					if wantMore {
						want = want[:opts.Limit]
					}
					if got := keysOf(kvs); fmt.Sprint(got) != fmt.Sprint(want) || more != wantMore ||
						!sort.StringsAreSorted(got) {
						t.Errorf("reader %d: List(%+v) at revision %d = %v more %v; want %v more %v", r, opts, rev, got, more, want, wantMore)
						return
					}
					for _, kv := range kvs {
						if err := checkKV(kv, rev); err != nil {
							t.Errorf("reader %d: List: %v", r, err)
							return
						}
					}
				}
				if finished {
					return
				}
				time.Sleep(20 * time.Microsecond) // leave the FSM room on small machines
			}
		}(r)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if s.Revision() != writes || s.AppliedIndex() != writes {
		t.Fatalf("after the writes: revision %d, index %d", s.Revision(), s.AppliedIndex())
	}
	t.Logf("reads per reader: %v", reads)
	s.Flush()
	kvs := s.dump()
	if len(kvs) != nkeys {
		t.Fatalf("%d keys after the writes, want %d", len(kvs), nkeys)
	}
	for _, kv := range kvs {
		if err := checkKV(kv, writes); err != nil {
			t.Fatal(err)
		}
	}
}

// Close commits what was applied, so a reopened store has all of it.
func TestCloseCommits(t *testing.T) {
	s := openWithInterval(t, longInterval)
	for i := 0; i < 20; i++ {
		s.put(fmt.Sprint("k", i%7), fmt.Sprint(i))
	}
	s.apply(withNow(NewDelete("k3", false, -1)))
	s.apply(&Command{Op: OpSetMember, Member: Member{ID: "n1", RaftAddr: "r"}})
	want := stateOf(t, s)
	if idx, _ := committed(t, s); idx != 0 {
		t.Fatalf("committed index %d before Close, want 0", idx)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mustEqual(t, "state after reopen", stateOf(t, openWithIntervalAt(t, s.path, longInterval)), want)
}

// The open transaction is committed early at maxPendingEntries entries or maxPendingBytes bytes.
func TestCommitWhenPendingCapsReached(t *testing.T) {
	t.Run("entries", func(t *testing.T) {
		s := openWithInterval(t, longInterval)
		now := time.Now().UnixNano()
		entries := make([]Entry, maxPendingEntries)
		for i := range entries {
			c := NewPut(fmt.Sprint("k", i%100), []byte("v"), -1, 0)
			c.Now = now
			entries[i] = Entry{Index: uint64(i + 1), Data: c.Encode()}
		}
		s.Apply(entries[:maxPendingEntries-1])
		if idx, _ := committed(t, s); idx != 0 {
			t.Fatalf("committed index %d below the entry cap", idx)
		}
		s.Apply(entries[maxPendingEntries-1:])
		if idx, _ := committed(t, s); idx != maxPendingEntries {
			t.Fatalf("committed index %d at the entry cap, want %d", idx, maxPendingEntries)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		s := openWithInterval(t, longInterval)
		s.put("small", "v")
		c := withNow(NewPut("big", bytes.Repeat([]byte("x"), maxPendingBytes), -1, 0))
		s.Apply([]Entry{{Index: 2, Data: c.Encode()}})
		if idx, _ := committed(t, s); idx != 2 || !committedHas(t, s, "big") {
			t.Fatalf("committed index %d past the byte cap, want 2", idx)
		}
	})
}

// A long read neither holds up Apply nor the reads that come after it:
// readers hold the overlay's lock only while they copy from it.
func TestApplyNotBlockedByReader(t *testing.T) {
	s := openWithInterval(t, longInterval)
	s.put("a", "1")
	inRead, release := make(chan struct{}), make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_ = s.read(func(map[string][]byte, int64) {}, func(*bolt.Tx) error {
			close(inRead)
			<-release
			return nil
		})
	}()
	<-inRead
	defer func() { close(release); <-readDone }()
	c := withNow(NewPut("b", []byte("2"), -1, 0))
	applied := make(chan struct{})
	go func() { s.Apply([]Entry{{Index: s.AppliedIndex() + 1, Data: c.Encode()}}); close(applied) }()
	select {
	case <-applied:
	case <-time.After(5 * time.Second):
		t.Fatal("Apply waits for a read in progress")
	}
	got := make(chan struct{})
	go func() { s.mustGet("b"); close(got) }()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("a Get waits for a read in progress")
	}
}

// Expired with no room for results returns none (and does not panic).
func TestExpiredNonPositiveLimit(t *testing.T) {
	s := openWithInterval(t, longInterval)
	now := time.Now().UnixNano()
	past := NewPut("old", []byte("v"), -1, now-int64(time.Hour))
	past.Now = now - 2*int64(time.Hour)
	s.apply(past)
	for _, limit := range []int{0, -1} {
		if got, err := s.Expired(now, limit); err != nil || len(got) != 0 {
			t.Fatalf("Expired(now, %d) = %v, %v; want nothing", limit, got, err)
		}
	}
}

// A CommitInterval shorter than the flush loop's resolution still works.
func TestTinyCommitInterval(t *testing.T) {
	s := openWithInterval(t, time.Nanosecond)
	s.put("a", "1")
	s.put("b", "2")
	eventually(t, 2*time.Second, "the commit", func() bool { idx, _ := committed(t, s); return idx == s.AppliedIndex() })
}

// ReleasePages gives back the pages of the file's mapping that reads left
// resident, and reads afterwards see the same data.
func TestReleasePagesDropsResidentPages(t *testing.T) {
	ts := mustOpenStore(t)
	val := strings.Repeat("v", 1024)
	for i := 0; i < 4000; i += 100 {
		cmds := make([][]byte, 0, 100)
		for j := i; j < i+100; j++ {
			cmds = append(cmds, withNow(NewPut(fmt.Sprintf("k%05d", j), []byte(val), -1, 0)).Encode())
		}
		ts.applyRaw(EncodeBatch(cmds))
	}
	ts.Flush()
	for i := 0; i < 4000; i++ {
		ts.mustGet(fmt.Sprintf("k%05d", i))
	}
	before, err := mapped.Resident(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	if before < 2<<20 {
		t.Fatalf("after reading 4 MiB of values %d bytes of the file are resident; want most of it", before)
	}
	ts.ReleasePages()
	after, err := mapped.Resident(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	if after > before/4 {
		t.Fatalf("resident %d bytes after ReleasePages, %d before", after, before)
	}
	for i := 0; i < 4000; i += 97 {
		if kv := ts.mustGet(fmt.Sprintf("k%05d", i)); string(kv.Value) != val {
			t.Fatalf("k%05d reads %d bytes after ReleasePages", i, len(kv.Value))
		}
	}
	ts.Close()
	ts.ReleasePages() // a closed store: nothing to do, no panic
}
