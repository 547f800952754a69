package store

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// applyWithin applies cmd to a fresh store and fails the test if Apply does
// not return within d. The store is deliberately not closed: a hung Apply
// holds its lock forever, and Close would hang too.
func applyWithin(t *testing.T, cmd *Command, d time.Duration) *Result {
	t.Helper()
	cfg := DefaultConfig(filepath.Join(t.TempDir(), "db"))
	cfg.NoSync = true
	logs := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	enc := cmd.Encode()
	if _, err := DecodeCommand(enc); err != nil {
		t.Logf("the command is refused by DecodeCommand: %v", err)
	}
	done := make(chan []*Result, 1)
	go func() { done <- s.Apply([]Entry{{Index: 1, Data: enc}}) }()
	select {
	case rs := <-done:
		s.Close()
		return rs[0]
	case <-time.After(d):
		first, _, _ := strings.Cut(logs.String(), "\n")
		t.Fatalf("BUG: Apply did not return within %v: it retries the entry forever; first log: %s", d, first)
		return nil
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestApplyOversizedIdempotencyKey: bbolt refuses keys over 32 KiB; an
// idempotency key that long used to fail Apply's transaction, which then
// retried it forever, so every node stopped applying the log. The entry
// must be answered (refused) instead. Runs in a child process because a
// regression hangs.
func TestApplyOversizedIdempotencyKey(t *testing.T) {
	if !isolated(t, 60*time.Second) {
		return
	}
	cmd := withNow(NewPut("k", []byte("v"), -1, 0))
	cmd.IdempotencyKey = strings.Repeat("i", 40000)
	if r := applyWithin(t, cmd, 3*time.Second); r == nil || !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("Apply answered %+v, want ErrInvalidCommand", r)
	}
}

// TestApplyOversizedMemberID: the same with a member ID.
func TestApplyOversizedMemberID(t *testing.T) {
	if !isolated(t, 60*time.Second) {
		return
	}
	cmd := &Command{Op: OpSetMember, Member: Member{ID: strings.Repeat("m", 40000), RaftAddr: "r"}}
	if r := applyWithin(t, cmd, 3*time.Second); r == nil || !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("Apply answered %+v, want ErrInvalidCommand", r)
	}
}

// TestApplyLargeButAllowedFields: fields right at the limits apply fine.
func TestApplyLargeButAllowedFields(t *testing.T) {
	s := mustOpenStore(t)
	key := strings.Repeat("k", MaxKeyLen)
	val := bytes.Repeat([]byte("v"), 1<<20)
	c := withNow(NewPut(key, val, -1, time.Now().Add(time.Hour).UnixNano()))
	c.IdempotencyKey = strings.Repeat("i", MaxIdempotencyKeyLen)
	s.apply(c)
	if kv := s.mustGet(key); !bytes.Equal(kv.Value, val) {
		t.Fatal("large value changed")
	}
	if r := s.apply(c); r.Revision != 1 {
		t.Fatalf("retry with the longest idempotency key: %+v", r)
	}
	m := Member{ID: strings.Repeat("m", MaxMemberFieldLen), RaftAddr: strings.Repeat("r", MaxMemberFieldLen), HTTPAddr: strings.Repeat("h", MaxMemberFieldLen)}
	s.apply(&Command{Op: OpSetMember, Member: m})
	if got, ok := s.Member(m.ID); !ok || got != m {
		t.Fatalf("Member = %+v, %v", got, ok)
	}
}

// TestExpiredNegativeExpiresAt: a put with a negative ExpiresAt is dead at
// once (Get reports it missing), but its TTL index entry sorts after every
// positive time, so Expired never reaches it while any live TTL exists.
// Such a command must be refused, or else be expired like any other.
func TestExpiredNegativeExpiresAt(t *testing.T) {
	s := mustOpenStore(t)
	now := time.Now().UnixNano()
	live := NewPut("live", []byte("v"), -1, now+int64(time.Hour))
	live.Now = now
	s.apply(live)
	neg := NewPut("neg", []byte("v"), -1, -1)
	neg.Now = -2 // alive when applied, so it is stored
	if r := s.applyRaw(neg.Encode()); r.Err != nil {
		if !errors.Is(r.Err, ErrInvalidCommand) {
			t.Fatalf("refused with %v, want ErrInvalidCommand", r.Err)
		}
		return // refused: fine
	}
	s.mustMissing("neg")
	exp, err := s.Expired(time.Now().UnixNano(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range exp {
		if x.Key == "neg" {
			return
		}
	}
	t.Errorf("BUG: key with ExpiresAt -1 is dead (Get reports it missing) but Expired never returns it: %+v", exp)
}

// TestHash: stores that applied the same entries hash the same; a
// different write or a restore changes that accordingly.
func TestHash(t *testing.T) {
	a, b := mustOpenStore(t), mustOpenStore(t)
	var entries []Entry
	now := time.Now().UnixNano()
	for i, k := range []string{"x", "y", "x", "z"} {
		c := NewPut(k, []byte(k), -1, 0)
		c.Now = now
		c.IdempotencyKey = k + string(rune('0'+i))
		entries = append(entries, Entry{Index: uint64(i + 1), Data: c.Encode()})
	}
	a.Apply(entries)
	b.Apply(entries)
	ha, ia, err := a.Hash()
	if err != nil {
		t.Fatal(err)
	}
	hb, ib, _ := b.Hash()
	if ha != hb || ia != ib || ia != 4 {
		t.Fatalf("same log, different hashes: %x@%d vs %x@%d", ha, ia, hb, ib)
	}
	b.put("w", "1")
	hb2, _, _ := b.Hash()
	if hb2 == ha {
		t.Fatal("a write did not change the hash")
	}
	if err := b.Restore(bytes.NewReader(snapshotBytes(t, a))); err != nil {
		t.Fatal(err)
	}
	if hb3, ib3, _ := b.Hash(); hb3 != ha || ib3 != ia {
		t.Fatalf("restored store hashes %x@%d, source %x@%d", hb3, ib3, ha, ia)
	}
}
