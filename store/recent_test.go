package store

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// forgetRecent empties s's recent-keys cache, as if it had never held
// anything (its dirty records put into the write transaction first):
// every entry's writes then read the records they replace from bbolt.
func forgetRecent(s *testStore) {
	s.applyMu.Lock()
	if s.wtx != nil {
		if err := s.flushKV(s.wtx); err != nil {
			panic(err)
		}
	}
	clear(s.recent)
	s.applyMu.Unlock()
}

// loseTransaction drops s's open write transaction uncommitted, as a
// failed commit does; the next Apply redoes the pending entries.
func loseTransaction(s *testStore) {
	s.applyMu.Lock()
	s.rollback()
	s.applyMu.Unlock()
}

// randomWrites returns n random writes over a few keys: puts, deletes (some
// by prefix), compare-and-swaps on mod revision and version, and keys with
// a TTL that has passed or not, all judged at now.
func randomWrites(rng *rand.Rand, n int, now int64) []*Command {
	hour := int64(time.Hour)
	key := func() string { return fmt.Sprintf("k/%d/%d", rng.Intn(3), rng.Intn(8)) }
	var out []*Command
	for range n {
		var c *Command
		switch r := rng.Intn(12); {
		case r < 4:
			c = NewPut(key(), []byte(fmt.Sprint(rng.Int())), -1, 0)
		case r == 4:
			c = NewPut(key(), []byte("ttl"), -1, now+hour)
		case r == 5:
			c = NewPut(key(), []byte("short"), -1, now+int64(rng.Intn(3))*hour/2)
		case r == 6:
			c = NewDelete(key(), false, -1)
		case r == 7:
			c = NewDelete(fmt.Sprintf("k/%d/", rng.Intn(3)), true, -1)
		case r == 8:
			c = NewPut(key(), []byte("cas"), int64(rng.Intn(40)), 0)
		case r == 10:
			// Reads of values inside the state machine: a compare on the
			// value, a get of one key and one of a prefix.
			k := key()
			c = &Command{Op: OpTxn, Txn: Txn{
				Compare: []Compare{{Key: k, Target: TargetValue, Op: CmpEqual, Value: []byte("txn")}},
				Success: []TxnOp{{Type: OpPut, Key: k, Value: []byte("cas")}, {Type: OpGet, Key: k}},
				Failure: []TxnOp{{Type: OpGet, Key: k}, {Type: OpGet, Key: fmt.Sprintf("k/%d/", rng.Intn(3)), Prefix: true}},
			}}
		case r == 11:
			k := key()
			c = &Command{Op: OpTxn, Txn: Txn{
				Success: []TxnOp{{Type: OpPut, Key: k, Value: []byte("txn")}, {Type: OpGet, Key: fmt.Sprintf("k/%d/", rng.Intn(3)), Prefix: true}},
			}}
		default:
			k := key()
			c = &Command{Op: OpTxn, Txn: Txn{
				Compare: []Compare{{Key: k, Target: TargetVersion, Op: CmpGreater, Num: int64(rng.Intn(3))}},
				Success: []TxnOp{{Type: OpPut, Key: k, Value: []byte("txn")}},
				Failure: []TxnOp{{Type: OpDelete, Key: k}},
			}}
		}
		// Half the commands are judged an hour later, when the shorter
		// TTLs have passed.
		c.Now = now + int64(rng.Intn(2))*hour
		out = append(out, c)
	}
	return out
}

// TestRecentKeysAgreeWithFile applies the same random writes to a store as
// it runs, and to one whose recent-keys cache is emptied before every
// entry, while the first also loses its open transaction now and then (a
// failed commit) and commits at random: every result, revision and record
// must be the same.
func TestRecentKeysAgreeWithFile(t *testing.T) {
	now := time.Now().UnixNano()
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		withCache := openWithInterval(t, longInterval)
		without := openWithInterval(t, longInterval)
		l := &cmdLog{now: now}
		for _, c := range randomWrites(rng, 400, now) {
			l.add(c)
		}
		for i, e := range l.entries {
			got := withCache.Apply([]Entry{e})
			forgetRecent(without)
			want := without.Apply([]Entry{e})
			mustEqual(t, fmt.Sprintf("seed %d: result of entry %d", seed, i+1), got[0], want[0])
			switch rng.Intn(20) {
			case 0:
				loseTransaction(withCache)
			case 1:
				withCache.Flush()
			}
		}
		withCache.Flush()
		without.Flush()
		mustEqual(t, fmt.Sprintf("seed %d: records", seed), withCache.dump(), without.dump())
		h1, r1, err1 := withCache.Hash()
		h2, r2, err2 := without.Hash()
		if err1 != nil || err2 != nil || h1 != h2 || r1 != r2 {
			t.Fatalf("seed %d: hash %x rev %d (%v) with the cache, %x rev %d (%v) without", seed, h1, r1, err1, h2, r2, err2)
		}
	}
}

// TestRecentKeysBounded writes more keys than the cache holds: it starts
// over instead of growing (its dirty records put into the transaction
// first), and versions stay right across the reset.
func TestRecentKeysBounded(t *testing.T) {
	s := openWithInterval(t, longInterval)
	const batch = 1000
	n := (maxRecent/batch + 2) * batch
	for i := 0; i < n; i += batch {
		puts := make([][]byte, 0, batch)
		for j := i; j < i+batch; j++ {
			c := NewPut(fmt.Sprintf("key/%06d", j), []byte("v"), -1, 0)
			c.Now = time.Now().UnixNano()
			puts = append(puts, c.Encode())
		}
		s.applyRaw(EncodeBatch(puts))
		s.applyMu.Lock() // recent belongs to the holder of applyMu
		held := len(s.recent)
		s.applyMu.Unlock()
		if held > maxRecent {
			t.Fatalf("recent holds %d keys, over its bound of %d", held, maxRecent)
		}
	}
	s.Flush()
	var inFile int
	if err := s.view(func(tx *bolt.Tx) error {
		inFile = tx.Bucket(bucketKV).Stats().KeyN
		return nil
	}); err != nil || inFile != n {
		t.Fatalf("the file holds %d keys (%v) after a commit, want %d", inFile, err, n)
	}
	for _, k := range []string{"key/000000", fmt.Sprintf("key/%06d", n-1)} {
		s.put(k, "again")
		if kv := s.mustGet(k); kv.Version != 2 {
			t.Fatalf("%s: version %d after two writes, want 2", k, kv.Version)
		}
	}
}
