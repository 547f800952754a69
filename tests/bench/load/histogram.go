package load

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits linear sub-buckets, so a recorded value is known to within
// 1/2^subBits (0.4%) of itself.
const subBits = 8

// maxBucket bounds the histogram: values above 2^40 ns (about 18 minutes)
// land in the last bucket. Operations are bounded far below that.
const maxBucket = (40-subBits+1)<<subBits + (1 << subBits)

// Histogram records durations in HDR-style log-linear buckets: constant
// memory, cheap recording, and quantiles within 0.4% of the true value.
// The count, sum, minimum and maximum are exact. The zero value is ready to
// use. A Histogram is not safe for concurrent use; give each worker its own
// and Merge them.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64
	min, max time.Duration
}

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	i := (shift+1)<<subBits + int(v>>uint(shift)) - (1 << subBits)
	return min(i, maxBucket-1)
}

// bucketHigh returns the largest value, in nanoseconds, bucket i holds.
func bucketHigh(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	shift := i>>subBits - 1
	mant := uint64(i&(1<<subBits-1)) + 1<<subBits
	return (mant+1)<<uint(shift) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, maxBucket)
	}
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, maxBucket)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded duration (0 if none).
func (h *Histogram) Min() time.Duration { return h.min }

// Max returns the largest recorded duration (0 if none).
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the average recorded duration (0 if none).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the duration below or at which a fraction q (0 to 1) of
// the recorded durations fall: the q-quantile by the nearest-rank method,
// to the histogram's precision and never above Max. It is 0 if nothing was
// recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n))) // 1-based
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketHigh(i))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
