// Package load is a closed-loop load generator for key-value stores. It
// owns the workload (which operation, which key, which value), the workers
// and the measurement; the caller supplies the operation itself as an
// OpFunc, so the same generator drives cairn over HTTP and etcd through its
// gRPC client, and their figures compare like for like.
//
// Each of Concurrency workers sends one request at a time and waits for its
// answer before the next (a closed loop), for a duration or until a count
// of operations is reached. Successful operations' latencies go into a
// Histogram; failed ones are counted as errors and keep a few samples.
// Keys are bench/000000 up to Keys-1, each operation's key drawn uniformly
// at random; every value is ValueSize random bytes.
//
// The package uses only the standard library.
package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is the kind of one operation the generator asks for.
type Kind uint8

// Operation kinds.
const (
	// Put writes value at key.
	Put Kind = iota + 1
	// Get reads key linearizably (never stale).
	Get
	// StaleGet reads key from whichever member serves it, possibly stale
	// (cairn's consistency=stale, etcd's serializable read).
	StaleGet
)

// String returns the kind's name: put, get or stale.
func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Get:
		return "get"
	case StaleGet:
		return "stale"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// OpFunc performs one operation of kind on key and returns when it is
// done. value is the value to write for Put and nil otherwise; the OpFunc
// must not modify or keep it. A read of a missing key is not an error. It
// must be safe for concurrent use, unless Config.OpFor hands each worker
// its own.
type OpFunc func(ctx context.Context, key string, value []byte, kind Kind) error

// Workload names a mix of operations.
type Workload string

// Workloads.
const (
	// WorkloadPut writes only.
	WorkloadPut Workload = "put"
	// WorkloadGet reads only, linearizably.
	WorkloadGet Workload = "get"
	// WorkloadStale reads only, possibly stale.
	WorkloadStale Workload = "stale"
	// WorkloadMixed reads linearizably a fraction Config.ReadRatio of the
	// time and writes otherwise.
	WorkloadMixed Workload = "mixed"
)

// Workloads lists every workload, in the order of the docs.
var Workloads = []Workload{WorkloadPut, WorkloadGet, WorkloadStale, WorkloadMixed}

// ParseWorkload returns the workload named s.
func ParseWorkload(s string) (Workload, error) {
	for _, w := range Workloads {
		if string(w) == s {
			return w, nil
		}
	}
	return "", fmt.Errorf("unknown workload %q: want put, get, stale or mixed", s)
}

// Reads reports whether the workload reads keys, so pre-filling them
// makes a difference.
func (w Workload) Reads() bool { return w != WorkloadPut }

// Defaults used by DefaultConfig and for zero Config fields.
const (
	DefaultConcurrency      = 16
	DefaultDuration         = 10 * time.Second
	DefaultValueSize        = 256
	DefaultKeys             = 10000
	DefaultReadRatio        = 0.9
	DefaultTimeout          = 10 * time.Second
	DefaultProgressInterval = 200 * time.Millisecond
	// KeyPrefix starts every key the generator uses.
	KeyPrefix = "bench/"
)

// Config describes one run.
type Config struct {
	// Workload is the mix of operations. Required.
	Workload Workload
	// Concurrency is the number of workers, each with one request in
	// flight at a time. Zero means DefaultConcurrency (16).
	Concurrency int
	// Duration bounds the run in time. Zero means DefaultDuration (10s)
	// unless Count is set, in which case the run is bounded by Count
	// alone.
	Duration time.Duration
	// Count bounds the run in operations (successful or not); zero means
	// no count bound. With both Duration and Count, whichever comes first
	// ends the run.
	Count int64
	// ValueSize is the size of each written value in bytes. Zero means
	// DefaultValueSize (256).
	ValueSize int
	// Keys is the number of distinct keys, bench/000000 to bench/<Keys-1>.
	// Zero means DefaultKeys (10,000).
	Keys int
	// ReadRatio is the fraction of reads in WorkloadMixed. Zero means
	// DefaultReadRatio (0.9).
	ReadRatio float64
	// Prefill writes every key once, with Concurrency workers, before the
	// measured run starts. It is not measured, and any error fails the run.
	Prefill bool
	// Timeout bounds each operation. Zero means DefaultTimeout (10s).
	Timeout time.Duration
	// Seed makes the key choice and the values reproducible; zero means
	// a fixed default seed, so two runs pick the same keys.
	Seed uint64
	// Op performs the operations. Either Op or OpFor is required.
	Op OpFunc
	// OpFor, when set, gives worker w (0 to Concurrency-1) its own OpFunc,
	// e.g. to spread workers over endpoints round-robin. It is called once
	// per worker before the run (and once per pre-fill worker), and
	// overrides Op.
	OpFor func(worker int) OpFunc
	// Progress, when set, is called every ProgressInterval from a
	// goroutine of its own during the pre-fill and the run, and once more
	// at the end of each.
	Progress func(Progress)
	// ProgressInterval is the time between Progress calls. Zero means
	// DefaultProgressInterval (200ms).
	ProgressInterval time.Duration
}

// DefaultConfig returns a configuration for workload w with every default
// spelled out.
func DefaultConfig(w Workload) Config {
	return Config{
		Workload:         w,
		Concurrency:      DefaultConcurrency,
		Duration:         DefaultDuration,
		ValueSize:        DefaultValueSize,
		Keys:             DefaultKeys,
		ReadRatio:        DefaultReadRatio,
		Timeout:          DefaultTimeout,
		ProgressInterval: DefaultProgressInterval,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if _, err := ParseWorkload(string(c.Workload)); err != nil {
		return err
	}
	switch {
	case c.Concurrency < 0:
		return fmt.Errorf("concurrency must not be negative, got %d", c.Concurrency)
	case c.Duration < 0:
		return fmt.Errorf("duration must not be negative, got %v", c.Duration)
	case c.Count < 0:
		return fmt.Errorf("count must not be negative, got %d", c.Count)
	case c.ValueSize < 0:
		return fmt.Errorf("value size must not be negative, got %d", c.ValueSize)
	case c.Keys < 0 || c.Keys > 100_000_000:
		return fmt.Errorf("keys must be between 1 and 100000000, got %d", c.Keys)
	case c.ReadRatio < 0 || c.ReadRatio > 1:
		return fmt.Errorf("read ratio must be between 0 and 1, got %v", c.ReadRatio)
	case c.Timeout < 0:
		return fmt.Errorf("timeout must not be negative, got %v", c.Timeout)
	case c.ProgressInterval < 0:
		return fmt.Errorf("progress interval must not be negative, got %v", c.ProgressInterval)
	case c.Op == nil && c.OpFor == nil:
		return errors.New("an Op or OpFor is required")
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Workload)
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Duration == 0 && c.Count == 0 {
		c.Duration = d.Duration
	}
	if c.ValueSize == 0 {
		c.ValueSize = d.ValueSize
	}
	if c.Keys == 0 {
		c.Keys = d.Keys
	}
	if c.ReadRatio == 0 {
		c.ReadRatio = d.ReadRatio
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = d.ProgressInterval
	}
	if c.Seed == 0 {
		c.Seed = 0xca1e1
	}
	return c
}

// Key returns the i-th benchmark key, bench/ and i in six or more digits.
func Key(i int) string {
	s := strconv.Itoa(i)
	if len(s) < 6 {
		s = "000000"[len(s):] + s
	}
	return KeyPrefix + s
}

// Phase says which part of a run a Progress report is about.
type Phase string

// Phases.
const (
	// PhasePrefill is the unmeasured writing of every key before a read run.
	PhasePrefill Phase = "prefill"
	// PhaseRun is the measured run.
	PhaseRun Phase = "run"
)

// Progress is a snapshot of a phase in progress.
type Progress struct {
	// Phase is the phase the snapshot is about.
	Phase Phase
	// Elapsed is the time since the phase started.
	Elapsed time.Duration
	// Ops counts the operations finished so far, errors included.
	Ops int64
	// Errors counts the failed operations so far.
	Errors int64
	// Fraction estimates how much of the phase is done, from 0 to 1.
	Fraction float64
	// Done is set on the last report of the phase.
	Done bool
}

// maxErrorSamples bounds the distinct error messages a Result keeps.
const maxErrorSamples = 5

// Run runs the workload described by cfg and returns its measurements.
// Cancelling ctx stops the run early; the result then covers what ran, and
// Run returns ctx's error with it. Errors of single operations do not fail
// the run; they are counted in the result. A failed pre-fill does.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	cfg = cfg.withDefaults()
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = Key(i)
	}
	res := &Result{
		Workload:    cfg.Workload,
		Concurrency: cfg.Concurrency,
		ValueSize:   cfg.ValueSize,
		Keys:        cfg.Keys,
		Prefilled:   cfg.Prefill,
	}
	if cfg.Workload == WorkloadMixed {
		res.ReadRatio = cfg.ReadRatio
	}
	if cfg.Prefill {
		start := time.Now()
		if err := prefill(ctx, cfg, keys); err != nil {
			return nil, err
		}
		res.PrefillSeconds = time.Since(start).Seconds()
	}
	cpu0 := processCPU()
	hist, elapsed, ops, errs, samples := run(ctx, cfg, keys)
	res.fill(hist, elapsed, ops, errs, samples)
	if cpu0 > 0 {
		res.ClientCPUSeconds = (processCPU() - cpu0).Seconds()
	}
	return res, ctx.Err()
}

// opFor returns worker w's operation.
func opFor(cfg Config, w int) OpFunc {
	if cfg.OpFor != nil {
		return cfg.OpFor(w)
	}
	return cfg.Op
}

// value returns ValueSize pseudo-random printable bytes, different for
// each worker.
func value(cfg Config, w int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1<<32))
	v := make([]byte, cfg.ValueSize)
	for i := range v {
		v[i] = alphabet[r.IntN(len(alphabet))]
	}
	return v
}

// errorSampler keeps the first few distinct error messages and how often
// each occurred.
type errorSampler struct {
	mu      sync.Mutex
	samples []ErrorSample
	other   int64
}

func (s *errorSampler) add(err error) {
	msg := err.Error()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.samples {
		if s.samples[i].Message == msg {
			s.samples[i].Count++
			return
		}
	}
	if len(s.samples) < maxErrorSamples {
		s.samples = append(s.samples, ErrorSample{Message: msg, Count: 1})
		return
	}
	s.other++
}

func (s *errorSampler) result() []ErrorSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]ErrorSample(nil), s.samples...)
	if s.other > 0 {
		out = append(out, ErrorSample{Message: "(other errors)", Count: s.other})
	}
	return out
}

// reporter calls cfg.Progress every interval until stopped.
type reporter struct {
	stop chan struct{}
	done chan struct{}
}

func startReporter(cfg Config, phase Phase, start time.Time, ops, errs *atomic.Int64, fraction func(time.Duration, int64) float64) *reporter {
	r := &reporter{stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Progress == nil {
		close(r.done)
		return r
	}
	report := func(done bool) {
		el := time.Since(start)
		n := ops.Load()
		f := 1.0
		if !done {
			f = min(max(fraction(el, n), 0), 1)
		}
		cfg.Progress(Progress{Phase: phase, Elapsed: el, Ops: n, Errors: errs.Load(), Fraction: f, Done: done})
	}
	go func() {
		defer close(r.done)
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				report(true)
				return
			case <-t.C:
				report(false)
			}
		}
	}()
	return r
}

func (r *reporter) finish() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// prefill writes every key once. Each put is tried up to three times.
func prefill(ctx context.Context, cfg Config, keys []string) error {
	var next, ops, errs atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	rep := startReporter(cfg, PhasePrefill, start, &ops, &errs, func(_ time.Duration, n int64) float64 {
		return float64(n) / float64(len(keys))
	})
	workers := min(cfg.Concurrency, len(keys))
	var wg sync.WaitGroup
	for w := range workers {
		op := opFor(cfg, w)
		val := value(cfg, w)
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(keys)) {
					return
				}
				var err error
				for range 3 {
					octx, ocancel := context.WithTimeout(ctx, cfg.Timeout)
					err = op(octx, keys[i], val, Put)
					ocancel()
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				ops.Add(1)
				if err != nil {
					errs.Add(1)
					once.Do(func() { firstErr = fmt.Errorf("load: pre-fill of %s: %w", keys[i], err) })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	rep.finish()
	if firstErr != nil {
		return firstErr
	}
	return context.Cause(ctx)
}

// run is the measured phase.
func run(ctx context.Context, cfg Config, keys []string) (*Histogram, time.Duration, int64, int64, []ErrorSample) {
	var claimed, ops, errs atomic.Int64
	var samples errorSampler
	hists := make([]Histogram, cfg.Concurrency)
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	rep := startReporter(cfg, PhaseRun, start, &ops, &errs, func(el time.Duration, n int64) float64 {
		f := 0.0
		if cfg.Duration > 0 {
			f = float64(el) / float64(cfg.Duration)
		}
		if cfg.Count > 0 {
			f = max(f, float64(n)/float64(cfg.Count))
		}
		return f
	})
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		op := opFor(cfg, w)
		val := value(cfg, w)
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
		h := &hists[w]
		wg.Go(func() {
			for ctx.Err() == nil {
				if cfg.Count > 0 && claimed.Add(1) > cfg.Count {
					return
				}
				t0 := time.Now()
				if !deadline.IsZero() && !t0.Before(deadline) {
					return
				}
				key := keys[rng.IntN(len(keys))]
				kind := Put
				switch cfg.Workload {
				case WorkloadGet:
					kind = Get
				case WorkloadStale:
					kind = StaleGet
				case WorkloadMixed:
					if rng.Float64() < cfg.ReadRatio {
						kind = Get
					}
				}
				var v []byte
				if kind == Put {
					v = val
				}
				octx, ocancel := context.WithTimeout(ctx, cfg.Timeout)
				err := op(octx, key, v, kind)
				ocancel()
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted, not failed
					}
					errs.Add(1)
					samples.add(err)
				} else {
					h.Record(d)
				}
				ops.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep.finish()
	var total Histogram
	for i := range hists {
		total.Merge(&hists[i])
	}
	return &total, elapsed, ops.Load(), errs.Load(), samples.result()
}

// Spread says which of members worker w of workers sends its next request
// to. Each worker keeps to member w mod members, so load is spread evenly,
// unless there are fewer workers than members: then each worker rotates
// over all of them, request by request, so that a single client samples
// the leader and the followers alike instead of whichever member happens
// to lead. Drivers of both systems use it, so they pick members alike.
func Spread(w, workers, members int) func() int {
	if members <= 1 {
		return func() int { return 0 }
	}
	if workers >= members {
		m := w % members
		return func() int { return m }
	}
	next := w % members
	return func() int {
		m := next
		next = (next + 1) % members
		return m
	}
}
