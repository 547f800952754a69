package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramQuantilesMatchSortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var all []time.Duration
	for range 100_000 {
		// Log-normal-ish latencies from 1µs to a few seconds.
		d := time.Duration(math.Exp(r.NormFloat64()*2+13)) + time.Microsecond
		h.Record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	exact := func(q float64) time.Duration {
		return all[int(math.Ceil(q*float64(len(all))))-1]
	}
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		got, want := h.Quantile(q), exact(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/(1<<subBits) {
			t.Errorf("q%v = %v, exact %v: %.4f off", q, got, want, rel)
		}
	}
	if h.Max() != all[len(all)-1] || h.Min() != all[0] || h.Quantile(1) != h.Max() {
		t.Errorf("min/max %v/%v, want %v/%v", h.Min(), h.Max(), all[0], all[len(all)-1])
	}
	if h.Count() != uint64(len(all)) {
		t.Errorf("count %d, want %d", h.Count(), len(all))
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every value lies in its bucket, and buckets are contiguous.
	prevHigh := uint64(0)
	for i := 1; i < maxBucket; i++ {
		lo, hi := bucketHigh(i-1)+1, bucketHigh(i)
		if lo != prevHigh+1 && i > 1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHigh)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		prevHigh = hi
	}
	if bucketOf(math.MaxUint64) != maxBucket-1 {
		t.Fatalf("huge values must land in the last bucket")
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	var a, b, empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 || empty.Max() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	a.Merge(&empty)
	if a.Count() != 2 || a.Mean() != 2*time.Millisecond || a.Min() != time.Millisecond || a.Max() != 3*time.Millisecond {
		t.Fatalf("merged: n=%d mean=%v min=%v max=%v", a.Count(), a.Mean(), a.Min(), a.Max())
	}
}

func TestKey(t *testing.T) {
	for i, want := range map[int]string{0: "bench/000000", 42: "bench/000042", 999999: "bench/999999", 1234567: "bench/1234567"} {
		if got := Key(i); got != want {
			t.Errorf("Key(%d) = %q, want %q", i, got, want)
		}
	}
}

// fakeStore is an in-memory OpFunc that counts what it was asked.
type fakeStore struct {
	mu    sync.Mutex
	data  map[string][]byte
	kinds map[Kind]int
	delay time.Duration
	fail  func(key string, kind Kind) error
}

func newFakeStore() *fakeStore {
	return &fakeStore{data: map[string][]byte{}, kinds: map[Kind]int{}}
}

func (f *fakeStore) op(ctx context.Context, key string, value []byte, kind Kind) error {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.fail != nil {
		if err := f.fail(key, kind); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kinds[kind]++
	if kind == Put {
		if len(value) == 0 {
			return errors.New("put without a value")
		}
		f.data[key] = bytes.Clone(value)
	} else if value != nil {
		return errors.New("read with a value")
	}
	return nil
}

func TestRunCountWorkloads(t *testing.T) {
	for _, tc := range []struct {
		w    Workload
		kind Kind
	}{{WorkloadPut, Put}, {WorkloadGet, Get}, {WorkloadStale, StaleGet}} {
		t.Run(string(tc.w), func(t *testing.T) {
			f := newFakeStore()
			res, err := Run(context.Background(), Config{Workload: tc.w, Concurrency: 4, Count: 1000, Keys: 50, ValueSize: 10, Op: f.op})
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops != 1000 || res.Errors != 0 || f.kinds[tc.kind] != 1000 || len(f.kinds) != 1 {
				t.Fatalf("ops %d errors %d kinds %v", res.Ops, res.Errors, f.kinds)
			}
			if res.Throughput <= 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.Latency.P99 < res.Latency.P50 {
				t.Fatalf("implausible figures: %+v", res)
			}
			for k, v := range f.data {
				if !strings.HasPrefix(k, KeyPrefix) || len(v) != 10 {
					t.Fatalf("wrote %q = %q", k, v)
				}
			}
		})
	}
}

func TestRunMixedRatio(t *testing.T) {
	f := newFakeStore()
	res, err := Run(context.Background(), Config{Workload: WorkloadMixed, Concurrency: 8, Count: 20000, Op: f.op})
	if err != nil {
		t.Fatal(err)
	}
	reads := float64(f.kinds[Get]) / float64(res.Ops)
	if math.Abs(reads-DefaultReadRatio) > 0.02 || f.kinds[StaleGet] != 0 {
		t.Fatalf("read fraction %.3f, want about %.2f (%v)", reads, DefaultReadRatio, f.kinds)
	}
	if res.ReadRatio != DefaultReadRatio {
		t.Fatalf("result read ratio %v", res.ReadRatio)
	}
}

func TestRunPrefillWritesEveryKeyAndSpreadsWorkers(t *testing.T) {
	f := newFakeStore()
	var perWorker [3]atomic.Int64
	var lastProgress Progress
	var phases []Phase
	var pmu sync.Mutex
	res, err := Run(context.Background(), Config{
		Workload: WorkloadGet, Concurrency: 3, Count: 300, Keys: 500, Prefill: true,
		OpFor: func(w int) OpFunc {
			return func(ctx context.Context, key string, value []byte, kind Kind) error {
				perWorker[w].Add(1)
				return f.op(ctx, key, value, kind)
			}
		},
		Progress: func(p Progress) {
			pmu.Lock()
			defer pmu.Unlock()
			if p.Done {
				phases = append(phases, p.Phase)
			}
			lastProgress = p
		},
		ProgressInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.data) != 500 || f.kinds[Put] != 500 || f.kinds[Get] != 300 {
		t.Fatalf("pre-fill wrote %d keys, %v", len(f.data), f.kinds)
	}
	for w := range perWorker {
		if perWorker[w].Load() == 0 {
			t.Fatalf("worker %d never ran", w)
		}
	}
	if !res.Prefilled || res.Ops != 300 {
		t.Fatalf("result %+v", res)
	}
	if !slices.Equal(phases, []Phase{PhasePrefill, PhaseRun}) || !lastProgress.Done || lastProgress.Ops != 300 || lastProgress.Fraction != 1 {
		t.Fatalf("progress phases %v, last %+v", phases, lastProgress)
	}
}

func TestRunDurationBound(t *testing.T) {
	f := newFakeStore()
	f.delay = time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), Config{Workload: WorkloadPut, Concurrency: 4, Duration: 150 * time.Millisecond, Op: f.op})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second || res.Seconds < 0.15 || res.Ops == 0 {
		t.Fatalf("ran %v, result %+v", el, res)
	}
	if res.Latency.P50 < 1 {
		t.Fatalf("p50 %v ms below the 1ms the op takes", res.Latency.P50)
	}
}

func TestRunCountsErrors(t *testing.T) {
	f := newFakeStore()
	var n atomic.Int64
	f.fail = func(string, Kind) error {
		if n.Add(1)%4 == 0 {
			return errors.New("boom")
		}
		return nil
	}
	res, err := Run(context.Background(), Config{Workload: WorkloadPut, Concurrency: 2, Count: 400, Op: f.op})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 100 || res.Ops != 400 || len(res.ErrorSamples) != 1 || res.ErrorSamples[0].Count != 100 {
		t.Fatalf("errors %d of %d, samples %+v", res.Errors, res.Ops, res.ErrorSamples)
	}
}

func TestRunFailedPrefillFails(t *testing.T) {
	f := newFakeStore()
	f.fail = func(key string, _ Kind) error {
		if key == Key(7) {
			return errors.New("disk full")
		}
		return nil
	}
	_, err := Run(context.Background(), Config{Workload: WorkloadGet, Count: 10, Keys: 100, Prefill: true, Op: f.op})
	if err == nil || !strings.Contains(err.Error(), "bench/000007") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunCancel(t *testing.T) {
	f := newFakeStore()
	f.delay = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Config{Workload: WorkloadPut, Concurrency: 4, Duration: time.Hour, Op: f.op})
	if !errors.Is(err, context.DeadlineExceeded) || res == nil || res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("err %v, result %+v", err, res)
	}
}

func TestConfigValidate(t *testing.T) {
	op := newFakeStore().op
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Workload: "scan", Op: op}, "unknown workload"},
		{Config{Workload: WorkloadPut}, "Op or OpFor"},
		{Config{Workload: WorkloadPut, Op: op, Concurrency: -1}, "concurrency"},
		{Config{Workload: WorkloadMixed, Op: op, ReadRatio: 1.5}, "read ratio"},
		{Config{Workload: WorkloadPut, Op: op, Keys: -3}, "keys"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := DefaultConfig(WorkloadPut).Validate(); err == nil {
		t.Error("DefaultConfig has no Op, so it must not validate")
	}
}

func TestResultOutput(t *testing.T) {
	res, err := Run(context.Background(), Config{Workload: WorkloadMixed, Count: 100, Op: newFakeStore().op})
	if err != nil {
		t.Fatal(err)
	}
	res.Target, res.Endpoints = "fake", []string{"a", "b"}
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"target", "workload", "concurrency", "throughput_ops_per_sec", "latency_ms", "errors", "ops"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, buf.String())
		}
	}
	buf.Reset()
	if err := res.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"throughput", "p50", "p99", "max", "errors", "mixed (90% get, 10% put)"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, buf.String())
		}
	}
	buf.Reset()
	bar := ProgressBar(&buf)
	bar(Progress{Phase: PhaseRun, Elapsed: time.Second, Ops: 10, Fraction: 0.5})
	bar(Progress{Phase: PhaseRun, Elapsed: 2 * time.Second, Ops: 20, Fraction: 1, Done: true})
	if !strings.Contains(buf.String(), "50%") || !strings.HasSuffix(buf.String(), "\n") {
		t.Errorf("progress bar %q", buf.String())
	}
}

// A run reports the CPU its own process spent, which grows with the work
// its operations do.
func TestRunReportsClientCPU(t *testing.T) {
	spin := func(ctx context.Context, key string, value []byte, kind Kind) error {
		for t0 := time.Now(); time.Since(t0) < 200*time.Microsecond; {
		}
		return nil
	}
	res, err := Run(context.Background(), Config{Workload: WorkloadPut, Concurrency: 1, Count: 500, Keys: 10, ValueSize: 10, Op: spin})
	if err != nil {
		t.Fatal(err)
	}
	// 500 operations of 200 µs busy each: at least 0.1 s of CPU, less than
	// the wall time of several runs.
	if res.ClientCPUSeconds < 0.08 || res.ClientCPUSeconds > 5 {
		t.Fatalf("client CPU %.3fs for 0.1s of busy operations", res.ClientCPUSeconds)
	}
	var out strings.Builder
	if err := res.WriteTable(&out); err != nil || !strings.Contains(out.String(), "client cpu") {
		t.Fatalf("table lacks the client CPU line (%v):\n%s", err, out.String())
	}
}

// Spread keeps workers to one member each when there are enough of them,
// and rotates a lone worker over every member.
func TestSpread(t *testing.T) {
	pick := func(w, workers, members, n int) []int {
		next := Spread(w, workers, members)
		var out []int
		for range n {
			out = append(out, next())
		}
		return out
	}
	mustSeq := func(what string, got, want []int) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
	mustSeq("worker 4 of 64 over 3", pick(4, 64, 3, 4), []int{1, 1, 1, 1})
	mustSeq("worker 0 of 1 over 3", pick(0, 1, 3, 5), []int{0, 1, 2, 0, 1})
	mustSeq("worker 1 of 2 over 3", pick(1, 2, 3, 4), []int{1, 2, 0, 1})
	mustSeq("one member", pick(3, 1, 1, 2), []int{0, 0})
}
