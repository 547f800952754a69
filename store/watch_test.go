package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

const watchWait = 10 * time.Second

// recv collects n events from w, failing the test at the deadline or if C
// closes first.
func recv(t testing.TB, w *Watcher, n int) []Event {
	t.Helper()
	var out []Event
	deadline := time.After(watchWait)
	for len(out) < n {
		select {
		case evs, ok := <-w.C:
			if !ok {
				t.Fatalf("watch closed (err %v) after %d of %d events: %+v", w.Err(), len(out), n, out)
			}
			if len(evs) == 0 {
				t.Fatal("watch delivered an empty batch")
			}
			out = append(out, evs...)
		case <-deadline:
			t.Fatalf("got %d of %d events within %v: %+v", len(out), n, watchWait, out)
		}
	}
	if len(out) != n {
		t.Fatalf("got %d events, want %d: %+v", len(out), n, out)
	}
	return out
}

// quiet fails the test if w delivers anything right now.
func quiet(t testing.TB, w *Watcher) {
	t.Helper()
	select {
	case evs, ok := <-w.C:
		t.Fatalf("unexpected delivery %+v (open %v)", evs, ok)
	default:
	}
}

// waitClosed waits for C to close and returns Err.
func waitClosed(t testing.TB, w *Watcher) error {
	t.Helper()
	deadline := time.After(watchWait)
	for {
		select {
		case _, ok := <-w.C:
			if !ok {
				return w.Err()
			}
		case <-deadline:
			t.Fatal("watch not closed")
		}
	}
}

func mustWatch(t testing.TB, s *testStore, key string, prefix bool, from int64) *Watcher {
	t.Helper()
	w, err := s.Watch(key, prefix, from)
	if err != nil {
		t.Fatalf("Watch(%q, %v, %d): %v", key, prefix, from, err)
	}
	t.Cleanup(w.Cancel)
	return w
}

type ev struct {
	typ OpType
	key string
	rev int64
	val string
}

func evsOf(events []Event) []ev {
	out := []ev{}
	for _, e := range events {
		out = append(out, ev{e.Type, e.KV.Key, e.KV.ModRevision, string(e.KV.Value)})
	}
	return out
}

func TestWatchFromNow(t *testing.T) {
	s := mustOpenStore(t)
	s.put("k", "old")
	w := mustWatch(t, s, "k", false, 0)
	quiet(t, w)
	s.put("k", "new")
	s.put("other", "x")
	s.apply(withNow(NewDelete("k", false, -1)))
	got := recv(t, w, 2)
	mustEqual(t, "events", evsOf(got), []ev{{OpPut, "k", 2, "new"}, {OpDelete, "k", 4, ""}})
	if got[0].KV.CreateRevision != 1 || got[0].KV.Version != 2 {
		t.Fatalf("put event KV = %+v", got[0].KV)
	}
	if got[1].KV.CreateRevision != 1 {
		t.Fatalf("delete event KV = %+v", got[1].KV)
	}
	quiet(t, w)
}

func TestWatchReplay(t *testing.T) {
	s := mustOpenStore(t)
	for i := 1; i <= 5; i++ {
		s.put("k", fmt.Sprint("v", i))
		s.put("x", fmt.Sprint("x", i))
	}
	// Revisions: k at 1,3,5,7,9; x at 2,4,6,8,10.
	w := mustWatch(t, s, "k", false, 4)
	got := recv(t, w, 3)
	mustEqual(t, "replayed", evsOf(got), []ev{{OpPut, "k", 5, "v3"}, {OpPut, "k", 7, "v4"}, {OpPut, "k", 9, "v5"}})
	s.put("k", "live")
	mustEqual(t, "live", evsOf(recv(t, w, 1)), []ev{{OpPut, "k", 11, "live"}})

	// From the current revision replays that revision's change only.
	w2 := mustWatch(t, s, "", true, s.Revision())
	mustEqual(t, "from current", evsOf(recv(t, w2, 1)), []ev{{OpPut, "k", 11, "live"}})
	quiet(t, w2)

	// From revision 1 replays everything.
	w3 := mustWatch(t, s, "", true, 1)
	if got := recv(t, w3, 11); got[0].KV.ModRevision != 1 || got[10].KV.ModRevision != 11 {
		t.Fatalf("replay from 1 = %+v", evsOf(got))
	}
	// Replayed events are in revision order.
	w4 := mustWatch(t, s, "", true, 2)
	prev := int64(0)
	for _, e := range recv(t, w4, 10) {
		if e.KV.ModRevision < prev {
			t.Fatalf("replay out of order: %d after %d", e.KV.ModRevision, prev)
		}
		prev = e.KV.ModRevision
	}
}

func TestWatchPrefix(t *testing.T) {
	s := mustOpenStore(t)
	wp := mustWatch(t, s, "a/", true, 0)
	wk := mustWatch(t, s, "a", false, 0)
	s.put("a/1", "1")  // 1
	s.put("b/1", "1")  // 2
	s.put("a", "1")    // 3
	s.put("ab", "1")   // 4
	s.put("a/2/x", "") // 5
	s.apply(withNow(NewDelete("a/", true, -1)))
	mustEqual(t, "prefix events", evsOf(recv(t, wp, 4)), []ev{
		{OpPut, "a/1", 1, "1"}, {OpPut, "a/2/x", 5, ""}, {OpDelete, "a/1", 6, ""}, {OpDelete, "a/2/x", 6, ""},
	})
	mustEqual(t, "key events", evsOf(recv(t, wk, 1)), []ev{{OpPut, "a", 3, "1"}})
	quiet(t, wp)
	quiet(t, wk)
}

// TestWatchTxnBatch: one transaction's events arrive together at one
// revision.
func TestWatchTxnBatch(t *testing.T) {
	s := mustOpenStore(t)
	w := mustWatch(t, s, "", true, 0)
	s.apply(withNow(&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{
		{Type: OpPut, Key: "a", Value: []byte("1")},
		{Type: OpPut, Key: "b", Value: []byte("2")},
	}}}))
	select {
	case evs := <-w.C:
		mustEqual(t, "batch", evsOf(evs), []ev{{OpPut, "a", 1, "1"}, {OpPut, "b", 1, "2"}})
	case <-time.After(watchWait):
		t.Fatal("no batch")
	}
}

func TestWatchValueIsCopied(t *testing.T) {
	s := mustOpenStore(t)
	w := mustWatch(t, s, "k", false, 0)
	data := withNow(NewPut("k", []byte("value"), -1, 0)).Encode()
	s.Apply([]Entry{{Index: 1, Data: data}})
	for i := range data {
		data[i] = 'X'
	}
	if got := recv(t, w, 1); string(got[0].KV.Value) != "value" {
		t.Fatalf("event value aliases the log entry: %q", got[0].KV.Value)
	}
}

func TestWatchCompacted(t *testing.T) {
	s := mustOpenStore(t)
	// One batch of 100 commands of 128 puts each: 12800 events at
	// revisions 1..100, more than DefaultWatchHistory.
	var entries []Entry
	now := time.Now().UnixNano()
	for i := 0; i < 100; i++ {
		c := &Command{Op: OpTxn, Now: now}
		for j := 0; j < MaxTxnOps; j++ {
			c.Txn.Success = append(c.Txn.Success, TxnOp{Type: OpPut, Key: fmt.Sprintf("k%03d", j), Value: []byte{byte(i)}})
		}
		entries = append(entries, Entry{Index: uint64(i + 1), Data: c.Encode()})
	}
	s.Apply(entries)
	if s.Revision() != 100 {
		t.Fatalf("revision %d", s.Revision())
	}
	_, err := s.Watch("", true, 1)
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) {
		t.Fatalf("Watch from 1 = %v, want a *CompactedError", err)
	}
	if ce.Oldest <= 1 || ce.Oldest > 100 {
		t.Fatalf("Oldest = %d", ce.Oldest)
	}
	// History holds at most DefaultWatchHistory events, in whole revisions.
	if held := (100 - ce.Oldest + 1) * MaxTxnOps; held > DefaultWatchHistory {
		t.Fatalf("oldest %d means %d events held, more than %d", ce.Oldest, held, DefaultWatchHistory)
	}
	if _, err := s.Watch("k000", false, ce.Oldest-1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Watch from Oldest-1 = %v", err)
	}
	w := mustWatch(t, s, "k000", false, ce.Oldest)
	got := recv(t, w, int(100-ce.Oldest+1))
	if got[0].KV.ModRevision != ce.Oldest || got[len(got)-1].KV.ModRevision != 100 {
		t.Fatalf("replay from Oldest: first %d last %d", got[0].KV.ModRevision, got[len(got)-1].KV.ModRevision)
	}
	// A whole revision is held: every key of revision Oldest replays.
	wa := mustWatch(t, s, "", true, ce.Oldest)
	var first []Event
	select {
	case first = <-wa.C:
	case <-time.After(watchWait):
		t.Fatal("no replay")
	}
	n := 0
	for _, e := range first {
		if e.KV.ModRevision == ce.Oldest {
			n++
		}
	}
	if n != MaxTxnOps {
		t.Fatalf("replay holds %d events of revision %d, want %d", n, ce.Oldest, MaxTxnOps)
	}
}

// TestWatchHistoryAcrossTrims: after many separate applies, each trimming
// the history in place, a watch from the oldest revision kept replays
// every revision from there to the last, once each, in order, with its
// own value.
func TestWatchHistoryAcrossTrims(t *testing.T) {
	s := mustOpenStore(t)
	now := time.Now().UnixNano()
	const revs = 400 // 100 events each: 40,000 events, many trims
	for i := 1; i <= revs; i++ {
		c := &Command{Op: OpTxn, Now: now}
		for j := 0; j < 100; j++ {
			c.Txn.Success = append(c.Txn.Success, TxnOp{Type: OpPut, Key: fmt.Sprintf("k%03d", j), Value: []byte(fmt.Sprint(i))})
		}
		s.applyRaw(c.Encode())
	}
	_, err := s.Watch("", true, 1)
	var ce *CompactedError
	if !errors.As(err, &ce) {
		t.Fatalf("Watch from 1 = %v, want a *CompactedError", err)
	}
	held := (revs - ce.Oldest + 1) * 100
	if held < DefaultWatchHistory || held > DefaultWatchHistory*5/4+100 {
		t.Fatalf("oldest %d means %d events held, want %d to %d", ce.Oldest, held, DefaultWatchHistory, DefaultWatchHistory*5/4+100)
	}
	w := mustWatch(t, s, "k042", false, ce.Oldest)
	got := recv(t, w, int(revs-ce.Oldest+1))
	for i, e := range got {
		want := ce.Oldest + int64(i)
		if e.KV.ModRevision != want || string(e.KV.Value) != fmt.Sprint(want) {
			t.Fatalf("event %d: revision %d value %q, want revision and value %d", i, e.KV.ModRevision, e.KV.Value, want)
		}
	}
}

// TestWatchHistoryShrinks: one revision of many events (as a delete by
// prefix of 50,000 keys publishes) grows the history's array far past the
// limit; the trim after it gives that memory back.
func TestWatchHistoryShrinks(t *testing.T) {
	var h watchHub
	h.init()
	big := make([]Event, 50000)
	for i := range big {
		big[i] = Event{Type: OpDelete, KV: KV{Key: fmt.Sprintf("big/%06d", i), ModRevision: 1}}
	}
	h.publish(big, 1)
	h.publish([]Event{{Type: OpPut, KV: KV{Key: "after", Value: []byte("v"), ModRevision: 2}}}, 2)
	for rev := int64(3); rev < 3+DefaultWatchHistory; rev++ { // trims in place from here
		h.publish([]Event{{Type: OpPut, KV: KV{Key: "k", ModRevision: rev}}}, rev)
	}
	h.mu.Lock()
	n, c := len(h.history), cap(h.history)
	h.mu.Unlock()
	if c > 2*(DefaultWatchHistory+DefaultWatchHistory/4) {
		t.Fatalf("history holds %d events in an array of %d: the big revision's memory was kept", n, c)
	}
	if n < DefaultWatchHistory || n > DefaultWatchHistory*5/4 {
		t.Fatalf("history holds %d events, want %d to %d", n, DefaultWatchHistory, DefaultWatchHistory*5/4)
	}
}

// TestWatchAfterReopen: a reopened store has no history; a watch from the
// past is compacted, from the next revision it works.
func TestWatchAfterReopen(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	s.put("a", "2")
	s.Close()
	s2 := mustOpenStoreAt(t, s.path)
	_, err := s2.Watch("a", false, 1)
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.Oldest != 3 {
		t.Fatalf("Watch from 1 after reopen = %v, want Oldest 3", err)
	}
	w := mustWatch(t, s2, "a", false, 3)
	s2.put("a", "3")
	mustEqual(t, "events", evsOf(recv(t, w, 1)), []ev{{OpPut, "a", 3, "3"}})
	if _, err := s2.Watch("a", false, 2); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Watch from 2 = %v", err)
	}
	w3 := mustWatch(t, s2, "a", false, 3)
	mustEqual(t, "replay", evsOf(recv(t, w3, 1)), []ev{{OpPut, "a", 3, "3"}})
}

func TestWatchCancel(t *testing.T) {
	s := mustOpenStore(t)
	w := mustWatch(t, s, "k", false, 0)
	w.Cancel()
	if err := waitClosed(t, w); err != nil {
		t.Fatalf("Err after Cancel = %v", err)
	}
	w.Cancel() // twice is fine
	s.put("k", "v")
	if _, ok := <-w.C; ok {
		t.Fatal("cancelled watch delivered")
	}
}

func TestWatchEndsOnRestore(t *testing.T) {
	src := mustOpenStore(t)
	src.put("x", "1")
	src.put("x", "2")
	snap := snapshotBytes(t, src)

	s := mustOpenStore(t)
	for i := 0; i < 5; i++ {
		s.put("k", fmt.Sprint(i))
	}
	w := mustWatch(t, s, "k", false, 0)
	wp := mustWatch(t, s, "", true, 3)
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*Watcher{w, wp} {
		err := waitClosed(t, w)
		var ce *CompactedError
		if !errors.Is(err, ErrCompacted) || !errors.As(err, &ce) {
			t.Fatalf("Err after Restore = %v, want ErrCompacted", err)
		}
		if ce.Oldest != 3 {
			t.Fatalf("Oldest = %d, want 3 (restored revision 2 + 1)", ce.Oldest)
		}
	}
	// New watches work from the restored revision on.
	if _, err := s.Watch("x", false, 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Watch from before the restore = %v", err)
	}
	nw := mustWatch(t, s, "x", false, 0)
	s.put("x", "3")
	mustEqual(t, "after restore", evsOf(recv(t, nw, 1)), []ev{{OpPut, "x", 3, "3"}})
}

func TestWatchEndsOnClose(t *testing.T) {
	s := mustOpenStore(t)
	w := mustWatch(t, s, "k", false, 0)
	s.Close()
	if err := waitClosed(t, w); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err after Close = %v, want ErrClosed", err)
	}
}

// TestWatchOverflow: a watcher that never reads is ended with
// ErrWatchOverflow instead of blocking Apply.
func TestWatchOverflow(t *testing.T) {
	s := mustOpenStore(t)
	w := mustWatch(t, s, "k", false, 0)
	other := mustWatch(t, s, "other", false, 0)
	for i := 0; i < 300; i++ {
		s.put("k", fmt.Sprint(i))
	}
	n := 0
	for range w.C {
		n++
	}
	if !errors.Is(w.Err(), ErrWatchOverflow) {
		t.Fatalf("Err = %v, want ErrWatchOverflow", w.Err())
	}
	if n == 0 || n >= 300 {
		t.Fatalf("overflowed watcher got %d batches", n)
	}
	// Other watchers are unaffected.
	s.put("other", "x")
	mustEqual(t, "other", evsOf(recv(t, other, 1)), []ev{{OpPut, "other", 301, "x"}})
}

// TestWatchFromFuture: a watch from a revision not yet reached should
// deliver events from that revision on, not the ones before it.
func TestWatchFromFuture(t *testing.T) {
	s := mustOpenStore(t)
	s.put("k", "1") // 1
	w := mustWatch(t, s, "k", false, 4)
	s.put("k", "2") // 2
	s.put("k", "3") // 3
	s.put("k", "4") // 4
	got := recv(t, w, 1)
	if got[0].KV.ModRevision != 4 {
		t.Errorf("BUG: Watch(from=4) at revision 1 delivered revision %d first; events before `from` leak through: %+v",
			got[0].KV.ModRevision, evsOf(got))
	}
}

// TestWatchSeesExpiryAfterUserDelete: a key with a TTL that has passed is
// deleted by a client before the leader's expirer gets to it. Watchers
// saw the key's put, so they must still see it go: either the delete or
// the later OpExpire must produce a delete event.
func TestWatchSeesExpiryAfterUserDelete(t *testing.T) {
	for _, prefix := range []bool{false, true} {
		t.Run(fmt.Sprint("prefix=", prefix), func(t *testing.T) {
			s := mustOpenStore(t)
			w := mustWatch(t, s, "", true, 0)
			t0 := time.Now().Add(-time.Hour).UnixNano()
			put := NewPut("ttl/k", []byte("v"), -1, t0+int64(time.Second))
			put.Now = t0
			s.apply(put)
			recv(t, w, 1)

			// The client's delete runs after the TTL passed.
			key := "ttl/k"
			if prefix {
				key = "ttl/"
			}
			del := NewDelete(key, prefix, -1)
			del.Now = t0 + int64(time.Minute)
			s.apply(del)
			// Then the leader's expirer runs.
			exp, err := s.Expired(time.Now().UnixNano(), 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(exp) > 0 {
				s.apply(&Command{Op: OpExpire, Now: time.Now().UnixNano(), Expire: exp})
			}
			select {
			case evs := <-w.C:
				mustEqual(t, "events", evsOf(evs)[0].typ, OpDelete)
			default:
				t.Errorf("BUG: the key left the store (Get: missing, Expired: %v) but watchers never got a delete event", exp)
			}
			s.mustMissing("ttl/k")
		})
	}
}
