package load

import (
	"errors"
	"fmt"
	"time"
)

// Flags are the workload settings every benchmark driver takes on its
// command line (cairn bench, and the etcd driver), checked in one place.
type Flags struct {
	// Workload is put, get, stale or mixed.
	Workload string
	// Concurrency is the number of workers.
	Concurrency int
	// Duration bounds the run; it may be zero when Count is set.
	Duration time.Duration
	// Count bounds the run by operations; zero means none.
	Count int64
	// ValueSize is each value's size in bytes.
	ValueSize int
	// Keys is how many distinct keys the run uses.
	Keys int
	// ReadRatio is the share of reads in the mixed workload.
	ReadRatio float64
	// Prefill writes every key once before the run.
	Prefill bool
	// Timeout bounds each operation.
	Timeout time.Duration
	// Seed seeds the key choice and values; zero means a fixed default.
	Seed uint64
	// DurationSet says Duration was given explicitly, so it also bounds a
	// Count run.
	DurationSet bool
}

// Config checks the flags and returns the configuration they describe,
// without the operation. Errors name the flag.
func (f Flags) Config() (Config, error) {
	w, err := ParseWorkload(f.Workload)
	if err != nil {
		return Config{}, fmt.Errorf("--workload: %w", err)
	}
	switch {
	case f.Concurrency < 1:
		return Config{}, fmt.Errorf("--concurrency must be at least 1, got %d", f.Concurrency)
	case f.Keys < 1:
		return Config{}, fmt.Errorf("--keys must be at least 1, got %d", f.Keys)
	case f.ValueSize < 1:
		return Config{}, fmt.Errorf("--value-size must be at least 1, got %d", f.ValueSize)
	case f.Duration <= 0 && f.Count <= 0:
		return Config{}, errors.New("give a positive --duration or --count")
	case f.Timeout <= 0:
		return Config{}, fmt.Errorf("--timeout must be positive, got %v", f.Timeout)
	case f.ReadRatio <= 0 || f.ReadRatio > 1:
		return Config{}, fmt.Errorf("--read-ratio must be above 0 and at most 1, got %v", f.ReadRatio)
	}
	cfg := Config{
		Workload:    w,
		Concurrency: f.Concurrency,
		Duration:    max(f.Duration, 0),
		Count:       f.Count,
		ValueSize:   f.ValueSize,
		Keys:        f.Keys,
		ReadRatio:   f.ReadRatio,
		Prefill:     f.Prefill,
		Timeout:     f.Timeout,
		Seed:        f.Seed,
	}
	if f.Count > 0 && !f.DurationSet {
		cfg.Duration = 0
	}
	return cfg, nil // Run checks the rest
}
