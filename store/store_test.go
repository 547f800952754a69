package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestOpenValidates(t *testing.T) {
	if _, err := Open(Config{}); err == nil {
		t.Fatal("Open with an empty Path succeeded")
	}
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "db"))
	cfg.IdempotencyWindow = -time.Second
	if _, err := Open(cfg); err == nil {
		t.Fatal("Open with a negative IdempotencyWindow succeeded")
	}
	if err := DefaultConfig("x").Validate(); err != nil {
		t.Fatalf("DefaultConfig.Validate: %v", err)
	}
}

func TestOpenLockedFile(t *testing.T) {
	s := mustOpenStore(t)
	cfg := DefaultConfig(s.path)
	cfg.Logger = discardLogger()
	start := time.Now()
	if s2, err := Open(cfg); err == nil {
		s2.Close()
		t.Fatal("a second Open of the same file succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

func TestEmptyStore(t *testing.T) {
	s := mustOpenStore(t)
	if s.AppliedIndex() != 0 || s.Revision() != 0 {
		t.Fatalf("fresh store at index %d revision %d", s.AppliedIndex(), s.Revision())
	}
	s.mustMissing("a")
	if kvs := s.dump(); len(kvs) != 0 {
		t.Fatalf("fresh store lists %+v", kvs)
	}
	if m := s.Members(); len(m) != 0 {
		t.Fatalf("fresh store has members %+v", m)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

// TestRevisionsAndVersions follows the etcd model: one revision per write
// command; create revision, mod revision and version per key; a deleted and
// recreated key starts again at version 1.
func TestRevisionsAndVersions(t *testing.T) {
	s := mustOpenStore(t)
	type want struct{ create, mod, version int64 }
	check := func(key string, w want) {
		t.Helper()
		kv := s.mustGet(key)
		if kv.CreateRevision != w.create || kv.ModRevision != w.mod || kv.Version != w.version {
			t.Fatalf("%s: create/mod/version = %d/%d/%d, want %d/%d/%d", key,
				kv.CreateRevision, kv.ModRevision, kv.Version, w.create, w.mod, w.version)
		}
	}
	if rev := s.put("a", "1"); rev != 1 {
		t.Fatalf("first put at revision %d", rev)
	}
	check("a", want{1, 1, 1})
	if rev := s.put("a", "2"); rev != 2 {
		t.Fatalf("second put at revision %d", rev)
	}
	check("a", want{1, 2, 2})
	s.put("b", "x")
	check("b", want{3, 3, 1})
	check("a", want{1, 2, 2})
	if kv := s.mustGet("a"); string(kv.Value) != "2" {
		t.Fatalf("a = %q", kv.Value)
	}

	r := s.apply(withNow(NewDelete("a", false, -1)))
	if !r.Succeeded || r.Deleted != 1 || r.Revision != 4 || s.Revision() != 4 {
		t.Fatalf("delete: %+v, store revision %d", r, s.Revision())
	}
	s.mustMissing("a")

	// Deleting a missing key deletes nothing and does not bump the revision.
	r = s.apply(withNow(NewDelete("a", false, -1)))
	if !r.Succeeded || r.Deleted != 0 || r.Revision != 4 || s.Revision() != 4 {
		t.Fatalf("delete of a missing key: %+v, store revision %d", r, s.Revision())
	}
	r = s.apply(withNow(NewDelete("nothing/", true, -1)))
	if r.Deleted != 0 || r.Revision != 4 {
		t.Fatalf("prefix delete matching nothing: %+v", r)
	}

	if rev := s.put("a", "again"); rev != 5 {
		t.Fatalf("recreate at revision %d", rev)
	}
	check("a", want{5, 5, 1})
	_, rev, err := s.Get("a")
	if err != nil || rev != 5 {
		t.Fatalf("Get revision = %d, %v", rev, err)
	}

	// A transaction writing many keys bumps the revision once.
	r = s.apply(withNow(&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{
		{Type: OpPut, Key: "a", Value: []byte("t")},
		{Type: OpPut, Key: "c", Value: []byte("t")},
		{Type: OpDelete, Key: "b"},
	}}}))
	if r.Revision != 6 || s.Revision() != 6 || r.Deleted != 1 {
		t.Fatalf("txn: %+v", r)
	}
	check("a", want{5, 6, 2})
	check("c", want{6, 6, 1})
	s.mustMissing("b")

	// Read-only and empty transactions do not bump it.
	r = s.apply(withNow(&Command{Op: OpTxn, Txn: Txn{Success: []TxnOp{{Type: OpGet, Key: "a"}}}}))
	if r.Revision != 6 || s.Revision() != 6 {
		t.Fatalf("read-only txn: %+v", r)
	}
	r = s.apply(withNow(&Command{Op: OpTxn}))
	if r.Revision != 6 || !r.Succeeded || len(r.Ops) != 0 {
		t.Fatalf("empty txn: %+v", r)
	}
}

func TestEmptyAndBinaryValues(t *testing.T) {
	s := mustOpenStore(t)
	s.apply(withNow(NewPut("empty", nil, -1, 0)))
	if kv := s.mustGet("empty"); kv.Value == nil || len(kv.Value) != 0 {
		t.Fatalf("empty value read back as %#v", kv.Value)
	}
	bin := []byte{0, 0xff, 0, 1, '\n'}
	s.apply(withNow(NewPut("bin", bin, -1, 0)))
	mustEqual(t, "binary value", s.mustGet("bin").Value, bin)
}

func TestCAS(t *testing.T) {
	tests := []struct {
		name  string
		setup []string // keys to put first: k at rev 1, then k again at rev 2
		cmd   *Command
		ok    bool
		mod   int64 // conflict mod revision
	}{
		{"put if absent on absent", nil, NewPut("k", []byte("new"), 0, 0), true, 0},
		{"put if absent on present", []string{"k"}, NewPut("k", []byte("new"), 0, 0), false, 1},
		{"put cas match", []string{"k", "k"}, NewPut("k", []byte("new"), 2, 0), true, 0},
		{"put cas stale", []string{"k", "k"}, NewPut("k", []byte("new"), 1, 0), false, 2},
		{"put cas future", []string{"k"}, NewPut("k", []byte("new"), 9, 0), false, 1},
		{"put cas on absent", nil, NewPut("k", []byte("new"), 5, 0), false, 0},
		{"delete cas match", []string{"k"}, NewDelete("k", false, 1), true, 0},
		{"delete cas stale", []string{"k", "k"}, NewDelete("k", false, 1), false, 2},
		{"delete cas absent", nil, NewDelete("k", false, 3), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpenStore(t)
			for i, k := range tc.setup {
				s.put(k, fmt.Sprint("old", i))
			}
			before := s.dump()
			rev := s.Revision()
			r := s.apply(withNow(tc.cmd))
			if r.Succeeded != tc.ok {
				t.Fatalf("Succeeded = %v, want %v (%+v)", r.Succeeded, tc.ok, r)
			}
			if tc.ok {
				if r.Conflict != nil {
					t.Fatalf("success with Conflict %+v", r.Conflict)
				}
				if r.Revision != rev+1 || s.Revision() != rev+1 {
					t.Fatalf("revision %d -> %d (result %d)", rev, s.Revision(), r.Revision)
				}
				return
			}
			if r.Conflict == nil {
				t.Fatal("failed CAS without Conflict")
			}
			if r.Conflict.Key != "k" || r.Conflict.ModRevision != tc.mod {
				t.Fatalf("Conflict = %+v, want key k mod %d", r.Conflict, tc.mod)
			}
			var err error = r.Conflict
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("errors.Is(%v, ErrConflict) = false", err)
			}
			var ce *ConflictError
			if !errors.As(fmt.Errorf("wrapped: %w", err), &ce) || ce.ModRevision != tc.mod {
				t.Fatalf("errors.As through a wrap failed: %v", ce)
			}
			if r.Revision != rev || s.Revision() != rev {
				t.Fatalf("conflict moved the revision %d -> %d (result %d)", rev, s.Revision(), r.Revision)
			}
			if r.Deleted != 0 || len(r.Ops) != 0 {
				t.Fatalf("conflict ran operations: %+v", r)
			}
			mustEqual(t, "state after conflict", s.dump(), before)
		})
	}
}

func TestPrefixDelete(t *testing.T) {
	s := mustOpenStore(t)
	for _, k := range []string{"a", "a/1", "a/2", "a/3/x", "ab", "b"} {
		s.put(k, "v")
	}
	rev := s.Revision()
	r := s.apply(withNow(NewDelete("a/", true, -1)))
	if r.Deleted != 3 || r.Revision != rev+1 || len(r.Ops) != 1 || r.Ops[0].Deleted != 3 {
		t.Fatalf("prefix delete: %+v", r)
	}
	mustEqual(t, "keys left", keysOf(s.dump()), []string{"a", "ab", "b"})
	r = s.apply(withNow(NewDelete("", true, -1)))
	if r.Deleted != 3 || r.Revision != rev+2 {
		t.Fatalf("delete everything: %+v", r)
	}
	if kvs := s.dump(); len(kvs) != 0 {
		t.Fatalf("left after deleting everything: %+v", kvs)
	}
}

func keysOf(kvs []KV) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

// TestTxnCompares checks every target and operator against a key with
// value "v2", create revision 1, mod revision 2, version 2, and a missing
// key.
func TestTxnCompares(t *testing.T) {
	cmp := func(key string, tg Target, op CmpOp, num int64, val string) Compare {
		c := Compare{Key: key, Target: tg, Op: op, Num: num}
		if val != "" {
			c.Value = []byte(val)
		}
		return c
	}
	tests := []struct {
		name string
		c    Compare
		want bool
	}{
		{"value ==", cmp("k", TargetValue, CmpEqual, 0, "v2"), true},
		{"value == other", cmp("k", TargetValue, CmpEqual, 0, "v1"), false},
		{"value !=", cmp("k", TargetValue, CmpNotEqual, 0, "v1"), true},
		{"value < bigger", cmp("k", TargetValue, CmpLess, 0, "v3"), true},
		{"value < smaller", cmp("k", TargetValue, CmpLess, 0, "v1"), false},
		{"value > smaller", cmp("k", TargetValue, CmpGreater, 0, "v1"), true},
		{"value > prefix of it", cmp("k", TargetValue, CmpGreater, 0, "v"), true},
		{"value == empty", cmp("k", TargetValue, CmpEqual, 0, ""), false},
		{"missing value ==", cmp("m", TargetValue, CmpEqual, 0, ""), false},
		{"missing value !=", cmp("m", TargetValue, CmpNotEqual, 0, "x"), false},
		{"mod ==", cmp("k", TargetModRevision, CmpEqual, 2, ""), true},
		{"mod == create", cmp("k", TargetModRevision, CmpEqual, 1, ""), false},
		{"mod <", cmp("k", TargetModRevision, CmpLess, 3, ""), true},
		{"mod >", cmp("k", TargetModRevision, CmpGreater, 2, ""), false},
		{"mod !=", cmp("k", TargetModRevision, CmpNotEqual, 2, ""), false},
		{"missing mod == 0", cmp("m", TargetModRevision, CmpEqual, 0, ""), true},
		{"create ==", cmp("k", TargetCreateRevision, CmpEqual, 1, ""), true},
		{"create >", cmp("k", TargetCreateRevision, CmpGreater, 0, ""), true},
		{"create == mod", cmp("k", TargetCreateRevision, CmpEqual, 2, ""), false},
		{"missing create == 0", cmp("m", TargetCreateRevision, CmpEqual, 0, ""), true},
		{"version ==", cmp("k", TargetVersion, CmpEqual, 2, ""), true},
		{"version <", cmp("k", TargetVersion, CmpLess, 2, ""), false},
		{"version >", cmp("k", TargetVersion, CmpGreater, 1, ""), true},
		{"missing version == 0", cmp("m", TargetVersion, CmpEqual, 0, ""), true},
		{"exists", cmp("k", TargetExists, CmpEqual, 1, ""), true},
		{"exists not", cmp("k", TargetExists, CmpEqual, 0, ""), false},
		{"missing exists", cmp("m", TargetExists, CmpEqual, 1, ""), false},
		{"missing absent", cmp("m", TargetExists, CmpEqual, 0, ""), true},
		{"missing != 1", cmp("m", TargetExists, CmpNotEqual, 1, ""), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustOpenStore(t)
			s.put("k", "v1")
			s.put("k", "v2")
			r := s.apply(withNow(&Command{Op: OpTxn, Txn: Txn{
				Compare: []Compare{tc.c},
				Success: []TxnOp{{Type: OpPut, Key: "branch", Value: []byte("success")}},
				Failure: []TxnOp{{Type: OpPut, Key: "branch", Value: []byte("failure")}},
			}}))
			if r.Succeeded != tc.want {
				t.Fatalf("Succeeded = %v, want %v", r.Succeeded, tc.want)
			}
			want := map[bool]string{true: "success", false: "failure"}[tc.want]
			if got := string(s.mustGet("branch").Value); got != want {
				t.Fatalf("branch ran %q, want %q", got, want)
			}
			if (r.Conflict == nil) != tc.want {
				t.Fatalf("Conflict = %+v with Succeeded %v", r.Conflict, r.Succeeded)
			}
			if r.Revision != 3 {
				t.Fatalf("either branch writes once: revision %d, want 3", r.Revision)
			}
		})
	}
}

// TestTxnAllOrNothing runs multi-compare transactions with get, put and
// delete in both branches.
func TestTxnAllOrNothing(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")     // rev 1
	s.put("b", "2")     // rev 2
	s.put("dir/x", "x") // rev 3
	s.put("dir/y", "y") // rev 4
	s.put("dir/z", "z") // rev 5
	txn := func(cmps ...Compare) *Command {
		return withNow(&Command{Op: OpTxn, Txn: Txn{
			Compare: cmps,
			Success: []TxnOp{
				{Type: OpGet, Key: "a"},
				{Type: OpPut, Key: "a", Value: []byte("S")},
				{Type: OpDelete, Key: "b"},
				{Type: OpGet, Key: "dir/", Prefix: true, Limit: 2},
				{Type: OpPut, Key: "new", Value: []byte("S")},
			},
			Failure: []TxnOp{
				{Type: OpGet, Key: "b"},
				{Type: OpGet, Key: "missing"},
				{Type: OpDelete, Key: "dir/", Prefix: true},
			},
		}})
	}
	ok := Compare{Key: "a", Target: TargetValue, Op: CmpEqual, Value: []byte("1")}
	bad := Compare{Key: "b", Target: TargetVersion, Op: CmpGreater, Num: 1}

	// The first compare holds, the second does not: nothing of Success
	// happens, Failure runs whole.
	before := s.mustGet("a")
	r := s.apply(txn(ok, bad))
	if r.Succeeded {
		t.Fatal("a transaction with a failing compare succeeded")
	}
	if r.Conflict == nil || r.Conflict.Key != "b" || r.Conflict.ModRevision != 2 {
		t.Fatalf("Conflict = %+v, want b at 2", r.Conflict)
	}
	if len(r.Ops) != 3 || r.Ops[0].Type != OpGet || r.Ops[1].Type != OpGet || r.Ops[2].Type != OpDelete {
		t.Fatalf("failure ops = %+v", r.Ops)
	}
	if len(r.Ops[0].KVs) != 1 || string(r.Ops[0].KVs[0].Value) != "2" || r.Ops[0].KVs[0].ModRevision != 2 {
		t.Fatalf("get b = %+v", r.Ops[0].KVs)
	}
	if len(r.Ops[1].KVs) != 0 {
		t.Fatalf("get of a missing key = %+v", r.Ops[1].KVs)
	}
	if r.Ops[2].Deleted != 3 || r.Deleted != 3 || r.Revision != 6 {
		t.Fatalf("failure delete: %+v", r)
	}
	mustEqual(t, "a untouched", s.mustGet("a"), before)
	s.mustMissing("new")
	s.mustGet("b")
	mustEqual(t, "keys", keysOf(s.dump()), []string{"a", "b"})

	// Put the dir back and run with both compares holding.
	s.put("dir/x", "x") // 7
	s.put("dir/y", "y") // 8
	s.put("dir/z", "z") // 9
	r = s.apply(txn(ok, Compare{Key: "b", Target: TargetExists, Op: CmpEqual, Num: 1}))
	if !r.Succeeded || r.Conflict != nil || r.Revision != 10 || r.Deleted != 1 {
		t.Fatalf("success: %+v", r)
	}
	if len(r.Ops) != 5 {
		t.Fatalf("success ops = %+v", r.Ops)
	}
	for i, typ := range []OpType{OpGet, OpPut, OpDelete, OpGet, OpPut} {
		if r.Ops[i].Type != typ {
			t.Fatalf("op %d type %d, want %d", i, r.Ops[i].Type, typ)
		}
	}
	if got := r.Ops[0].KVs; len(got) != 1 || string(got[0].Value) != "1" || got[0].Version != 1 {
		t.Fatalf("get a before the put = %+v", got)
	}
	if r.Ops[2].Deleted != 1 {
		t.Fatalf("delete b = %+v", r.Ops[2])
	}
	if got := keysOf(r.Ops[3].KVs); !reflect.DeepEqual(got, []string{"dir/x", "dir/y"}) {
		t.Fatalf("prefix get with limit 2 = %v", got)
	}
	a := s.mustGet("a")
	if string(a.Value) != "S" || a.ModRevision != 10 || a.Version != 2 || a.CreateRevision != 1 {
		t.Fatalf("a = %+v", a)
	}
	if n := s.mustGet("new"); n.ModRevision != 10 || n.CreateRevision != 10 {
		t.Fatalf("new = %+v", n)
	}
	s.mustMissing("b")
}

// TestTxnFailedWithoutFailureBranch: a failed compare and no Failure ops
// leave the store and the revision untouched.
func TestTxnFailedWithoutFailureBranch(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	r := s.apply(withNow(&Command{Op: OpTxn, Txn: Txn{
		Compare: []Compare{{Key: "a", Target: TargetValue, Op: CmpEqual, Value: []byte("nope")}},
		Success: []TxnOp{{Type: OpPut, Key: "a", Value: []byte("2")}, {Type: OpDelete, Key: "", Prefix: true}},
	}}))
	if r.Succeeded || r.Revision != 1 || s.Revision() != 1 || len(r.Ops) != 0 {
		t.Fatalf("result %+v, store revision %d", r, s.Revision())
	}
	if string(s.mustGet("a").Value) != "1" {
		t.Fatal("a changed")
	}
}

func TestTTL(t *testing.T) {
	s := mustOpenStore(t)
	now := time.Now().UnixNano()
	hour := int64(time.Hour)

	// Written two hours ago with a one hour TTL: live when applied, expired
	// on this node's clock now.
	past := NewPut("old", []byte("v"), -1, now-hour)
	past.Now = now - 2*hour
	r := s.apply(past)
	if !r.Succeeded || r.Revision != 1 {
		t.Fatalf("put with ttl: %+v", r)
	}
	future := NewPut("fresh", []byte("v"), -1, now+hour)
	future.Now = now
	s.apply(future)
	s.put("forever", "v")

	s.mustMissing("old")
	if kv := s.mustGet("fresh"); kv.ExpiresAt != now+hour {
		t.Fatalf("fresh ExpiresAt = %d", kv.ExpiresAt)
	}
	if kv := s.mustGet("forever"); kv.ExpiresAt != 0 {
		t.Fatalf("forever ExpiresAt = %d", kv.ExpiresAt)
	}
	mustEqual(t, "listed", keysOf(s.dump()), []string{"forever", "fresh"})

	exp, err := s.Expired(time.Now().UnixNano(), 10)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "expired now", exp, []ExpireKey{{Key: "old", ModRevision: 1}})
	exp, _ = s.Expired(now+hour, 10)
	mustEqual(t, "expired in an hour", exp, []ExpireKey{{Key: "old", ModRevision: 1}, {Key: "fresh", ModRevision: 2}})
	exp, _ = s.Expired(now+hour, 1)
	mustEqual(t, "expired with limit 1", exp, []ExpireKey{{Key: "old", ModRevision: 1}})
	exp, _ = s.Expired(now-3*hour, 10)
	if len(exp) != 0 {
		t.Fatalf("expired three hours ago: %+v", exp)
	}

	// Expire as the leader would.
	rev := s.Revision()
	r = s.apply(&Command{Op: OpExpire, Now: now, Expire: []ExpireKey{{Key: "old", ModRevision: 1}}})
	if !r.Succeeded || r.Deleted != 1 || r.Revision != rev+1 || s.Revision() != rev+1 {
		t.Fatalf("expire: %+v", r)
	}
	if exp, _ := s.Expired(time.Now().UnixNano(), 10); len(exp) != 0 {
		t.Fatalf("still expired after OpExpire: %+v", exp)
	}
	// Expiring it again does nothing.
	r = s.apply(&Command{Op: OpExpire, Now: now, Expire: []ExpireKey{{Key: "old", ModRevision: 1}}})
	if r.Deleted != 0 || r.Revision != rev+1 {
		t.Fatalf("second expire: %+v", r)
	}

	// Overwriting without a TTL clears it.
	s.put("fresh", "v2")
	if exp, _ := s.Expired(now+2*hour, 10); len(exp) != 0 {
		t.Fatalf("TTL kept after an overwrite without one: %+v", exp)
	}
	if kv := s.mustGet("fresh"); kv.ExpiresAt != 0 || kv.Version != 2 {
		t.Fatalf("fresh = %+v", kv)
	}
}

// TestExpireStaleModRevision: the leader saw a key expire, then the key was
// rewritten before the OpExpire was applied; the rewrite survives.
func TestExpireStaleModRevision(t *testing.T) {
	s := mustOpenStore(t)
	now := time.Now().UnixNano()
	c := NewPut("k", []byte("v1"), -1, now-int64(time.Minute))
	c.Now = now - int64(time.Hour)
	s.apply(c)
	exp, _ := s.Expired(now, 10)
	mustEqual(t, "expired", exp, []ExpireKey{{Key: "k", ModRevision: 1}})

	s.put("k", "v2") // rev 2, no TTL
	r := s.apply(&Command{Op: OpExpire, Now: now, Expire: exp})
	if r.Deleted != 0 || r.Revision != 2 || s.Revision() != 2 {
		t.Fatalf("stale expire: %+v", r)
	}
	kv := s.mustGet("k")
	if string(kv.Value) != "v2" || kv.ModRevision != 2 {
		t.Fatalf("k = %+v", kv)
	}
}

// TestTTLJudgedByCommandClock: Apply decides expiry by the command's Now,
// not its own clock, so replaying the log anywhere gives the same result.
func TestTTLJudgedByCommandClock(t *testing.T) {
	s := mustOpenStore(t)
	const t0 = int64(1_000_000_000_000)
	put := func(v string, expiresAt, now int64) *Result {
		c := NewPut("k", []byte(v), -1, expiresAt)
		c.Now = now
		return s.apply(c)
	}
	put("v1", t0+10, t0) // rev 1, live until t0+10
	// At t0+5 the key is live: an overwrite keeps create revision 1.
	put("v2", t0+10, t0+5)
	kv := s.apply(&Command{Op: OpTxn, Now: t0 + 5, Txn: Txn{Success: []TxnOp{{Type: OpGet, Key: "k"}}}}).Ops[0].KVs
	if len(kv) != 1 || kv[0].CreateRevision != 1 || kv[0].Version != 2 {
		t.Fatalf("get at t0+5 = %+v", kv)
	}
	// At t0+10 it has expired: a txn get sees nothing, a put-if-absent
	// succeeds and starts a new life at version 1.
	r := s.apply(&Command{Op: OpTxn, Now: t0 + 10, Txn: Txn{Success: []TxnOp{{Type: OpGet, Key: "k"}}}})
	if len(r.Ops[0].KVs) != 0 {
		t.Fatalf("get at t0+10 = %+v", r.Ops[0].KVs)
	}
	c := NewPut("k", []byte("v3"), 0, 0)
	c.Now = t0 + 10
	r = s.apply(c)
	if !r.Succeeded {
		t.Fatalf("put-if-absent over an expired key: %+v", r)
	}
	got := s.mustGet("k")
	if got.CreateRevision != 3 || got.ModRevision != 3 || got.Version != 1 || got.ExpiresAt != 0 {
		t.Fatalf("recreated k = %+v", got)
	}
}

func TestIdempotency(t *testing.T) {
	s := mustOpenStore(t)
	cmd := withNow(NewPut("k", []byte("v1"), -1, 0))
	cmd.IdempotencyKey = "req-1"
	first := s.apply(cmd)
	if !first.Succeeded || first.Revision != 1 {
		t.Fatalf("first: %+v", first)
	}
	second := s.apply(cmd)
	if second.Revision != first.Revision || second.Succeeded != first.Succeeded ||
		second.Deleted != first.Deleted || second.Conflict != nil || second.Err != nil {
		t.Fatalf("retry answered %+v, first was %+v", second, first)
	}
	if s.Revision() != 1 {
		t.Fatalf("retry bumped the revision to %d", s.Revision())
	}
	if kv := s.mustGet("k"); kv.Version != 1 {
		t.Fatalf("retry applied again: %+v", kv)
	}

	// A different command under the same key still answers the first
	// result and changes nothing.
	other := withNow(NewPut("k", []byte("v2"), -1, 0))
	other.IdempotencyKey = "req-1"
	if r := s.apply(other); r.Revision != 1 {
		t.Fatalf("reused key: %+v", r)
	}
	if kv := s.mustGet("k"); string(kv.Value) != "v1" {
		t.Fatalf("reused key applied: %+v", kv)
	}

	// A conflict is remembered too, even once the CAS would succeed.
	cas := withNow(NewPut("k", []byte("cas"), 0, 0))
	cas.IdempotencyKey = "req-2"
	r := s.apply(cas)
	if r.Succeeded || r.Conflict == nil || r.Conflict.ModRevision != 1 {
		t.Fatalf("cas: %+v", r)
	}
	s.apply(withNow(NewDelete("k", false, -1))) // rev 2
	r2 := s.apply(cas)
	if r2.Succeeded || r2.Conflict == nil || *r2.Conflict != *r.Conflict || r2.Revision != r.Revision {
		t.Fatalf("retried conflict answered %+v (conflict %+v), first %+v", r2, r2.Conflict, r)
	}
	s.mustMissing("k")

	// Deletes remember Deleted.
	s.put("d", "x")
	del := withNow(NewDelete("d", false, -1))
	del.IdempotencyKey = "req-3"
	d1 := s.apply(del)
	s.put("d", "y")
	d2 := s.apply(del)
	if d1.Deleted != 1 || d2.Deleted != 1 || d2.Revision != d1.Revision {
		t.Fatalf("delete retry: first %+v, second %+v", d1, d2)
	}
	if string(s.mustGet("d").Value) != "y" {
		t.Fatal("retried delete applied again")
	}

	// Idempotency keys survive a restart.
	s.Close()
	s2 := mustOpenStoreAt(t, s.path)
	if r := s2.apply(cmd); r.Revision != 1 {
		t.Fatalf("retry after reopen: %+v", r)
	}
	s2.mustMissing("k")
}

// TestIdempotentRetryReturnsOps: the retry of a transaction should answer
// what the first attempt answered, including the per-operation results.
func TestIdempotentRetryReturnsOps(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	cmd := withNow(&Command{Op: OpTxn, IdempotencyKey: "txn-1", Txn: Txn{Success: []TxnOp{
		{Type: OpGet, Key: "a"},
		{Type: OpPut, Key: "b", Value: []byte("2")},
	}}})
	first := s.apply(cmd)
	second := s.apply(cmd)
	if !reflect.DeepEqual(second.Ops, first.Ops) {
		t.Errorf("BUG: a retried transaction loses its operation results:\n first  Ops %+v\n retry  Ops %+v", first.Ops, second.Ops)
	}
}

func TestIdempotencyWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	cfg := DefaultConfig(path)
	cfg.NoSync = true
	cfg.IdempotencyWindow = time.Minute
	cfg.Logger = testLogger(t)
	s := mustOpenStoreConfig(t, cfg)
	const t0 = int64(1_000_000_000_000_000)
	at := func(key, idem string, now int64) *Result {
		c := NewPut(key, []byte(fmt.Sprint(now)), -1, 0)
		c.IdempotencyKey, c.Now = idem, now
		return s.apply(c)
	}
	at("k", "a", t0)
	if r := at("k", "a", t0+int64(30*time.Second)); r.Revision != 1 {
		t.Fatalf("retry inside the window applied: %+v", r)
	}
	// Another keyed command after the window makes the store forget "a".
	at("other", "b", t0+int64(2*time.Minute))
	if r := at("k", "a", t0+int64(2*time.Minute)); r.Revision != 3 {
		t.Fatalf("key reused after the window answered %+v, want a new write at 3", r)
	}
}

// TestApplySkipsOldEntries: entries at or below the applied index are
// skipped, so a restarted node can replay its log.
func TestApplySkipsOldEntries(t *testing.T) {
	s := mustOpenStore(t)
	now := time.Now().UnixNano()
	put := func(k, v string) []byte {
		c := NewPut(k, []byte(v), -1, 0)
		c.Now = now
		return c.Encode()
	}
	entries := []Entry{
		{Index: 1, Data: put("a", "1")},
		{Index: 2, Data: nil}, // configuration change
		{Index: 3, Data: put("b", "1")},
		{Index: 5, Data: put("a", "2")}, // indexes may skip
	}
	rs := s.Apply(entries)
	if len(rs) != 4 || rs[0] == nil || rs[1] != nil || rs[2] == nil || rs[3] == nil {
		t.Fatalf("results = %+v", rs)
	}
	if s.AppliedIndex() != 5 || s.Revision() != 3 {
		t.Fatalf("index %d revision %d", s.AppliedIndex(), s.Revision())
	}
	state := s.dump()

	rs = s.Apply(entries)
	for i, r := range rs {
		if r != nil {
			t.Fatalf("replayed entry %d answered %+v, want nil", entries[i].Index, r)
		}
	}
	rs = s.Apply([]Entry{{Index: 4, Data: put("c", "1")}, {Index: 5, Data: put("c", "1")}})
	if rs[0] != nil || rs[1] != nil {
		t.Fatalf("entries below the applied index answered %+v", rs)
	}
	if s.AppliedIndex() != 5 || s.Revision() != 3 {
		t.Fatalf("replay moved index %d revision %d", s.AppliedIndex(), s.Revision())
	}
	mustEqual(t, "state after replay", s.dump(), state)

	// A mixed batch: the old entry is skipped, the new ones applied.
	rs = s.Apply([]Entry{{Index: 5, Data: put("x", "1")}, {Index: 6, Data: put("c", "1")}, {Index: 7, Data: put("d", "1")}})
	if rs[0] != nil || rs[1] == nil || rs[2] == nil || rs[2].Revision != 5 {
		t.Fatalf("mixed batch: %+v", rs)
	}
	s.mustMissing("x")

	// Restart without reapplying: close, reopen, replay the whole log.
	state = s.dump()
	idx, rev := s.AppliedIndex(), s.Revision()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get("a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	s2 := mustOpenStoreAt(t, s.path)
	if s2.AppliedIndex() != idx || s2.Revision() != rev {
		t.Fatalf("reopened at index %d revision %d, want %d %d", s2.AppliedIndex(), s2.Revision(), idx, rev)
	}
	mustEqual(t, "state after reopen", s2.dump(), state)
	all := append(entries, Entry{Index: 6, Data: put("c", "1")}, Entry{Index: 7, Data: put("d", "1")})
	for _, r := range s2.Apply(all) {
		if r != nil {
			t.Fatalf("reapply after restart answered %+v", r)
		}
	}
	mustEqual(t, "state after reapply", s2.dump(), state)
	if s2.AppliedIndex() != idx || s2.Revision() != rev {
		t.Fatalf("reapply moved index %d revision %d", s2.AppliedIndex(), s2.Revision())
	}
}

func TestApplyUndecodableEntry(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	for i, data := range [][]byte{{}, {0xff}, {CommandVersion}, append(NewPut("a", nil, -1, 0).Encode(), 0)} {
		r := s.applyRaw(data)
		if r.Err == nil || !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("entry %d: Err = %v, want ErrInvalidCommand", i, r.Err)
		}
		if r.Revision != 1 || s.Revision() != 1 {
			t.Fatalf("entry %d: %+v", i, r)
		}
	}
	if s.AppliedIndex() != 5 {
		t.Fatalf("applied index %d, want 5", s.AppliedIndex())
	}
	if s.mustGet("a").ModRevision != 1 {
		t.Fatal("a changed")
	}
}

func TestApplyConfigEntry(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	rs := s.Apply([]Entry{{Index: 10}})
	if len(rs) != 1 || rs[0] != nil {
		t.Fatalf("config entry answered %+v", rs)
	}
	if s.AppliedIndex() != 10 || s.Revision() != 1 {
		t.Fatalf("index %d revision %d", s.AppliedIndex(), s.Revision())
	}
}

func TestApplyAfterClose(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	s.Close()
	done := make(chan []*Result)
	go func() { done <- s.Apply([]Entry{{Index: 2, Data: NewPut("b", nil, -1, 0).Encode()}}) }()
	select {
	case rs := <-done:
		if len(rs) != 1 || rs[0] != nil {
			t.Fatalf("Apply after Close = %+v", rs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Apply after Close blocked")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, _, err := s.List(ListOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("List after Close: %v", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close: %v", err)
	}
	if _, err := s.Expired(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Expired after Close: %v", err)
	}
}

func TestList(t *testing.T) {
	s := mustOpenStore(t)
	for _, k := range []string{"b/1", "a/2", "c", "a", "a/1", "b", "a/3", "ä"} {
		s.put(k, "val-"+k)
	}
	now := time.Now().UnixNano()
	ex := NewPut("a/25", []byte("expired"), -1, now-int64(time.Second))
	ex.Now = now - int64(time.Minute)
	s.apply(ex)

	tests := []struct {
		name string
		opts ListOptions
		keys []string
		more bool
	}{
		{"all", ListOptions{}, []string{"a", "a/1", "a/2", "a/3", "b", "b/1", "c", "ä"}, false},
		{"prefix", ListOptions{Prefix: "a/"}, []string{"a/1", "a/2", "a/3"}, false},
		{"prefix a", ListOptions{Prefix: "a"}, []string{"a", "a/1", "a/2", "a/3"}, false},
		{"prefix none", ListOptions{Prefix: "zz"}, []string{}, false},
		{"after", ListOptions{Prefix: "a/", After: "a/1"}, []string{"a/2", "a/3"}, false},
		{"after missing key", ListOptions{Prefix: "a/", After: "a/15"}, []string{"a/2", "a/3"}, false},
		{"after last", ListOptions{Prefix: "a/", After: "a/3"}, []string{}, false},
		{"after before prefix", ListOptions{Prefix: "b", After: "a"}, []string{"b", "b/1"}, false},
		{"after past prefix", ListOptions{Prefix: "a", After: "b"}, []string{}, false},
		{"after all", ListOptions{After: "b"}, []string{"b/1", "c", "ä"}, false},
		{"limit more", ListOptions{Prefix: "a/", Limit: 2}, []string{"a/1", "a/2"}, true},
		{"limit exact", ListOptions{Prefix: "a/", Limit: 3}, []string{"a/1", "a/2", "a/3"}, false},
		{"limit over", ListOptions{Prefix: "a/", Limit: 30}, []string{"a/1", "a/2", "a/3"}, false},
		{"limit 1", ListOptions{Limit: 1}, []string{"a"}, true},
		{"limit skips expired", ListOptions{Prefix: "a/", After: "a/2", Limit: 1}, []string{"a/3"}, false},
		{"page", ListOptions{After: "a/3", Limit: 2}, []string{"b", "b/1"}, true},
		{"keys only", ListOptions{Prefix: "b", KeysOnly: true}, []string{"b", "b/1"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kvs, more, rev, err := s.List(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "keys", keysOf(kvs), tc.keys)
			if more != tc.more {
				t.Fatalf("more = %v, want %v", more, tc.more)
			}
			if rev != s.Revision() {
				t.Fatalf("revision %d, want %d", rev, s.Revision())
			}
			for _, kv := range kvs {
				if tc.opts.KeysOnly {
					if kv.Value != nil {
						t.Fatalf("keys-only %s has value %q", kv.Key, kv.Value)
					}
				} else if string(kv.Value) != "val-"+kv.Key {
					t.Fatalf("%s = %q", kv.Key, kv.Value)
				}
				if kv.ModRevision == 0 || kv.CreateRevision == 0 || kv.Version != 1 {
					t.Fatalf("%s has revisions %+v", kv.Key, kv)
				}
				if want := s.mustGet(kv.Key); want.ModRevision != kv.ModRevision {
					t.Fatalf("List and Get disagree on %s: %+v vs %+v", kv.Key, kv, want)
				}
			}
		})
	}

	// Paging with After and Limit visits every key once, in order.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		kvs, more, _, err := s.List(ListOptions{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, keysOf(kvs)...)
		if !more {
			break
		}
		after = kvs[len(kvs)-1].Key
	}
	mustEqual(t, "paged keys", got, []string{"a", "a/1", "a/2", "a/3", "b", "b/1", "c", "ä"})
}

// TestListExpiredTail: when everything after the limit has expired, more
// is false.
func TestListExpiredTail(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	now := time.Now().UnixNano()
	for _, k := range []string{"b", "c"} {
		c := NewPut(k, []byte("x"), -1, now-int64(time.Second))
		c.Now = now - int64(time.Minute)
		s.apply(c)
	}
	kvs, more, _, err := s.List(ListOptions{Limit: 1})
	if err != nil || more || len(kvs) != 1 {
		t.Fatalf("List = %+v, more %v, %v", kvs, more, err)
	}
}

func TestMembers(t *testing.T) {
	s := mustOpenStore(t)
	set := func(id, raft, http string) {
		r := s.apply(&Command{Op: OpSetMember, Member: Member{ID: id, RaftAddr: raft, HTTPAddr: http}})
		if !r.Succeeded || r.Revision != s.Revision() {
			t.Fatalf("set member: %+v", r)
		}
	}
	s.put("k", "v")
	set("n2", "10.0.0.2:7000", "10.0.0.2:8000")
	set("n1", "10.0.0.1:7000", "10.0.0.1:8000")
	set("n3", "10.0.0.3:7000", "")
	if s.Revision() != 1 {
		t.Fatalf("member changes moved the revision to %d", s.Revision())
	}
	mustEqual(t, "members", s.Members(), []Member{
		{ID: "n1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8000"},
		{ID: "n2", RaftAddr: "10.0.0.2:7000", HTTPAddr: "10.0.0.2:8000"},
		{ID: "n3", RaftAddr: "10.0.0.3:7000"},
	})
	set("n1", "10.0.0.9:7000", "10.0.0.9:8000")
	if m, ok := s.Member("n1"); !ok || m.RaftAddr != "10.0.0.9:7000" || m.HTTPAddr != "10.0.0.9:8000" {
		t.Fatalf("Member(n1) = %+v, %v", m, ok)
	}
	r := s.apply(&Command{Op: OpRemoveMember, Member: Member{ID: "n2"}})
	if !r.Succeeded {
		t.Fatalf("remove: %+v", r)
	}
	if _, ok := s.Member("n2"); ok {
		t.Fatal("n2 still recorded")
	}
	s.apply(&Command{Op: OpRemoveMember, Member: Member{ID: "never"}})
	want := []Member{
		{ID: "n1", RaftAddr: "10.0.0.9:7000", HTTPAddr: "10.0.0.9:8000"},
		{ID: "n3", RaftAddr: "10.0.0.3:7000"},
	}
	mustEqual(t, "members after remove", s.Members(), want)

	// Mutating the returned slice must not change the store's view.
	ms := s.Members()
	ms[0].RaftAddr = "mutated"
	mustEqual(t, "members after caller mutation", s.Members(), want)

	s.Close()
	s2 := mustOpenStoreAt(t, s.path)
	mustEqual(t, "members after reopen", s2.Members(), want)
	if m, ok := s2.Member("n3"); !ok || m.RaftAddr != "10.0.0.3:7000" {
		t.Fatalf("Member(n3) after reopen = %+v, %v", m, ok)
	}
}

func TestWaitApplied(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitApplied(ctx, 1); err != nil {
		t.Fatalf("WaitApplied of a reached index: %v", err)
	}
	if err := s.WaitRevision(ctx, 1); err != nil {
		t.Fatalf("WaitRevision of a reached revision: %v", err)
	}
	if err := s.WaitApplied(ctx, 0); err != nil {
		t.Fatalf("WaitApplied(0): %v", err)
	}

	errs := make(chan error, 2)
	go func() { errs <- s.WaitApplied(ctx, 4) }()
	go func() { errs <- s.WaitRevision(ctx, 3) }()
	// Index 2 is a config entry (no revision), then two puts.
	s.Apply([]Entry{{Index: 2}})
	s.put("b", "1") // index 3, revision 2
	select {
	case err := <-errs:
		t.Fatalf("a waiter returned early: %v", err)
	default:
	}
	s.put("c", "1") // index 4, revision 3
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("waiter: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiter did not return after the index was reached")
		}
	}
}

func TestWaitTimeout(t *testing.T) {
	s := mustOpenStore(t)
	s.put("a", "1")
	tests := []struct {
		name string
		wait func(context.Context) error
	}{
		{"applied", func(ctx context.Context) error { return s.WaitApplied(ctx, 100) }},
		{"revision", func(ctx context.Context) error { return s.WaitRevision(ctx, 100) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			// A write in between wakes the waiter, which must go back to
			// waiting.
			var wg sync.WaitGroup
			wg.Add(1)
			idx := s.AppliedIndex() + 1
			go func() {
				defer wg.Done()
				s.Apply([]Entry{{Index: idx, Data: withNow(NewPut("w-"+tc.name, nil, -1, 0)).Encode()}})
			}()
			err := tc.wait(ctx)
			wg.Wait()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("returned after %v", d)
			}
			ctx, cancel = context.WithCancel(context.Background())
			cancel()
			if err := tc.wait(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled: err = %v", err)
			}
		})
	}
}

// TestReopenKeepsEverything: a closed and reopened store has the same
// keys, revisions, index and members.
func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	s := mustOpenStoreAt(t, path)
	s.put("a", "1")
	s.put("a", "2")
	s.put("b", "1")
	s.apply(&Command{Op: OpSetMember, Member: Member{ID: "n1", RaftAddr: "r", HTTPAddr: "h"}})
	state, idx, rev := s.dump(), s.AppliedIndex(), s.Revision()
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpenStoreAt(t, path)
	mustEqual(t, "state", s2.dump(), state)
	if s2.AppliedIndex() != idx || s2.Revision() != rev {
		t.Fatalf("index %d rev %d, want %d %d", s2.AppliedIndex(), s2.Revision(), idx, rev)
	}
	if s2.put("c", "1") != rev+1 {
		t.Fatal("revision did not continue after reopen")
	}
}
