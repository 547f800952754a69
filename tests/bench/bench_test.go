package bench

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/bench/load"
)

const (
	valueSize = 256
	numKeys   = 10_000
)

// benchStore is a store on a temp dir that applies entries at increasing
// Raft indexes, as the FSM would.
type benchStore struct {
	*store.Store
	index uint64
}

func openStore(tb testing.TB, noSync bool) *benchStore {
	tb.Helper()
	cfg := store.DefaultConfig(filepath.Join(tb.TempDir(), "fsm.db"))
	cfg.NoSync = noSync
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := store.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return &benchStore{Store: s}
}

// entries returns n encoded puts at the next n indexes, keys chosen at
// random from numKeys.
func (s *benchStore) entries(r *rand.Rand, value []byte, n int) []store.Entry {
	es := make([]store.Entry, n)
	for i := range es {
		s.index++
		es[i] = store.Entry{Index: s.index, Data: store.NewPut(load.Key(r.IntN(numKeys)), value, -1, 0).Encode()}
	}
	return es
}

// apply applies es and fails on any error result.
func (s *benchStore) apply(tb testing.TB, es []store.Entry) {
	for i, r := range s.Apply(es) {
		if r == nil || r.Err != nil {
			tb.Fatalf("entry %d (index %d): %+v", i, es[i].Index, r)
		}
	}
}

// fill writes every key once, in batches of 256.
func (s *benchStore) fill(tb testing.TB, value []byte) {
	for start := 0; start < numKeys; start += 256 {
		var es []store.Entry
		for k := start; k < min(start+256, numKeys); k++ {
			s.index++
			es = append(es, store.Entry{Index: s.index, Data: store.NewPut(load.Key(k), value, -1, 0).Encode()})
		}
		s.apply(tb, es)
	}
}

func testValue() []byte { return bytes.Repeat([]byte("v"), valueSize) }

// TestSanity checks, quickly and without -bench, that what the benchmarks
// measure works: an applied batch can be read back.
func TestSanity(t *testing.T) {
	s := openStore(t, true)
	v := testValue()
	es := s.entries(rand.New(rand.NewPCG(1, 1)), v, 16)
	s.apply(t, es)
	cmd, err := store.DecodeCommand(es[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	kv, rev, err := s.Get(cmd.Txn.Success[0].Key)
	if err != nil || !bytes.Equal(kv.Value, v) || rev != 16 {
		t.Fatalf("Get: %v, %d bytes, revision %d", err, len(kv.Value), rev)
	}
}

// BenchmarkApply measures the state machine applying batches of puts of
// 256 B, each batch one bbolt transaction, as hashicorp/raft hands the FSM
// a batch of committed entries. "sync" fsyncs every commit, as cairn
// server does; "nosync" shows the cost without the fsync. The entries/s
// metric is the one to compare across batch sizes.
func BenchmarkApply(b *testing.B) {
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"sync", false}, {"nosync", true}} {
		for _, n := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode.name, n), func(b *testing.B) {
				s := openStore(b, mode.noSync)
				v := testValue()
				r := rand.New(rand.NewPCG(1, uint64(n)))
				s.fill(b, v)
				b.SetBytes(int64(n * valueSize))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					b.StopTimer()
					es := s.entries(r, v, n)
					b.StartTimer()
					s.apply(b, es)
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkCommandEncode measures encoding a put of 256 B.
func BenchmarkCommandEncode(b *testing.B) {
	v := testValue()
	b.ReportAllocs()
	for b.Loop() {
		_ = store.NewPut("bench/004242", v, -1, 0).Encode()
	}
}

// BenchmarkCommandDecode measures decoding a put of 256 B.
func BenchmarkCommandDecode(b *testing.B) {
	data := store.NewPut("bench/004242", testValue(), -1, 0).Encode()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := store.DecodeCommand(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet measures store.Get of random keys in a store of 10,000 keys
// of 256 B: one goroutine, and as many as GOMAXPROCS.
func BenchmarkGet(b *testing.B) {
	s := openStore(b, true)
	s.fill(b, testValue())
	keys := make([]string, numKeys)
	for i := range keys {
		keys[i] = load.Key(i)
	}
	b.Run("serial", func(b *testing.B) {
		r := rand.New(rand.NewPCG(2, 2))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.Get(keys[r.IntN(numKeys)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 3))
			for pb.Next() {
				if _, _, err := s.Get(keys[r.IntN(numKeys)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
