package store

import (
	"bytes"
	"errors"
	"math/rand"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// fuzzSeeds returns valid encodings, damaged encodings and garbage.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, c := range sampleCommands() {
		enc := c.Encode()
		seeds = append(seeds, enc, enc[:len(enc)/2], append(bytes.Clone(enc), 0))
	}
	now := time.Now().UnixNano()
	past := NewPut("ttl", []byte("v"), -1, now-int64(time.Second))
	past.Now = now - int64(time.Hour)
	seeds = append(seeds,
		past.Encode(),
		(&Command{Op: OpExpire, Now: now, Expire: []ExpireKey{{Key: "ttl", ModRevision: 1}}}).Encode(),
		nil,
		[]byte{},
		[]byte{0},
		[]byte{CommandVersion},
		[]byte{CommandVersion, byte(OpTxn)},
		[]byte{CommandVersion, 0xff, 0, 0},
		[]byte{2, 1, 0, 0, 0, 0, 0},
		[]byte("garbage that is not a command"),
	)
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 4; i++ {
		b := make([]byte, 1+r.Intn(64))
		r.Read(b)
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzDecodeAndApply decodes arbitrary bytes and applies them to a real
// store, one per worker process, at increasing indexes. Nothing may panic
// or hang, and the store's bookkeeping must stay consistent.
func FuzzDecodeAndApply(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	cfg := DefaultConfig(filepath.Join(f.TempDir(), "fuzz.db"))
	cfg.NoSync = true
	cfg.Logger = discardLogger()
	st, err := Open(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })

	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, derr := DecodeCommand(b)
		if derr != nil {
			if cmd != nil || !errors.Is(derr, ErrInvalidCommand) {
				t.Fatalf("DecodeCommand = %+v, %v", cmd, derr)
			}
		} else {
			// A decoded command re-encodes to the same command.
			again, err := DecodeCommand(cmd.Encode())
			if err != nil {
				t.Fatalf("re-encoded command does not decode: %v", err)
			}
			if !reflect.DeepEqual(again, cmd) {
				t.Fatalf("re-encoding changed the command:\n%+v\n%+v", cmd, again)
			}
		}

		idx := st.AppliedIndex() + 1
		rev := st.Revision()
		done := make(chan []*Result, 1)
		data := append([]byte{}, b...) // never nil: nil data is a config entry
		go func() { done <- st.Apply([]Entry{{Index: idx, Data: data}}) }()
		var rs []*Result
		select {
		case rs = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Apply of %d bytes did not return within 10s (decoded: %v)", len(b), derr == nil)
		}
		if len(rs) != 1 || rs[0] == nil {
			t.Fatalf("Apply = %+v", rs)
		}
		r := rs[0]
		if (derr != nil) != (r.Err != nil) {
			t.Fatalf("decode error %v but Result.Err %v", derr, r.Err)
		}
		if st.AppliedIndex() != idx {
			t.Fatalf("applied index %d, want %d", st.AppliedIndex(), idx)
		}
		now := st.Revision()
		if now != rev && now != rev+1 {
			t.Fatalf("revision moved from %d to %d in one command", rev, now)
		}
		retry := derr == nil && cmd.IdempotencyKey != ""
		if r.Revision != now && !(retry && r.Revision <= now) {
			// A retried idempotency key answers its first, older result.
			t.Fatalf("Result.Revision %d, store revision %d", r.Revision, now)
		}
		if now == rev+1 && derr == nil && cmd.Op != OpTxn && cmd.Op != OpExpire {
			t.Fatalf("op %d bumped the revision", cmd.Op)
		}
		// Reads still work.
		if _, _, _, err := st.List(ListOptions{Limit: 10}); err != nil {
			t.Fatalf("List: %v", err)
		}
		if derr == nil && cmd.Op == OpTxn {
			for _, op := range cmd.Txn.Success {
				if _, _, err := st.Get(op.Key); err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatalf("Get(%q): %v", op.Key, err)
				}
			}
		}
	})
}
