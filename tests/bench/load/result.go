package load

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what a run measured. Its JSON form is the output of
// `cairn bench -o json` and of etcdload, so scripts read both alike.
type Result struct {
	// Target names the system measured ("cairn", "etcd"); set by the
	// driver.
	Target string `json:"target"`
	// Driver names how the target was driven, e.g. "http" or "grpc"; set
	// by the driver.
	Driver string `json:"driver,omitempty"`
	// Endpoints are the addresses the workers were spread over; set by the
	// driver.
	Endpoints []string `json:"endpoints"`
	// Workload is the mix of operations.
	Workload Workload `json:"workload"`
	// Concurrency is the number of workers.
	Concurrency int `json:"concurrency"`
	// ValueSize is the size of each written value in bytes.
	ValueSize int `json:"value_size"`
	// Keys is the number of distinct keys.
	Keys int `json:"keys"`
	// ReadRatio is the fraction of reads of a mixed workload.
	ReadRatio float64 `json:"read_ratio,omitempty"`
	// Prefilled says whether every key was written before the run.
	Prefilled bool `json:"prefilled"`
	// PrefillSeconds is how long the pre-fill took.
	PrefillSeconds float64 `json:"prefill_seconds,omitempty"`
	// Seconds is the measured run's wall-clock time.
	Seconds float64 `json:"seconds"`
	// Ops counts the operations finished, errors included.
	Ops int64 `json:"ops"`
	// Errors counts the failed operations.
	Errors int64 `json:"errors"`
	// Throughput is successful operations per second.
	Throughput float64 `json:"throughput_ops_per_sec"`
	// Latency summarises the successful operations' latencies.
	Latency Latency `json:"latency_ms"`
	// ErrorSamples are the first few distinct error messages with their
	// counts.
	ErrorSamples []ErrorSample `json:"error_samples,omitempty"`
	// ClientCPUSeconds is the CPU time (user and system) this load
	// generator's process used during the measured run: on a machine it
	// shares with the servers, what the client costs them.
	ClientCPUSeconds float64 `json:"client_cpu_seconds,omitempty"`
	// ServerCPUSeconds is the CPU time the target's servers used during
	// the run, when whoever ran them measured it (scripts/bench.sh does);
	// never set by Run.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
}

// Latency holds latency figures in milliseconds.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// ErrorSample is one distinct error message and how often it occurred.
type ErrorSample struct {
	Message string `json:"message"`
	Count   int64  `json:"count"`
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*1e4) / 1e4
}

func (r *Result) fill(h *Histogram, elapsed time.Duration, ops, errs int64, samples []ErrorSample) {
	r.Seconds = math.Round(elapsed.Seconds()*1e4) / 1e4
	r.Ops, r.Errors = ops, errs
	if elapsed > 0 {
		r.Throughput = math.Round(float64(h.Count())/elapsed.Seconds()*10) / 10
	}
	r.Latency = Latency{
		Min:  ms(h.Min()),
		Mean: ms(h.Mean()),
		P50:  ms(h.Quantile(0.50)),
		P90:  ms(h.Quantile(0.90)),
		P99:  ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)),
		Max:  ms(h.Max()),
	}
	r.ErrorSamples = samples
}

// WriteJSON writes r as indented JSON and a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r for people: one figure a line.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	wl := string(r.Workload)
	if r.Workload == WorkloadMixed {
		wl = fmt.Sprintf("mixed (%.0f%% get, %.0f%% put)", r.ReadRatio*100, (1-r.ReadRatio)*100)
	}
	target := r.Target
	if r.Driver != "" {
		target += " (" + r.Driver + ")"
	}
	fmt.Fprintf(tw, "target\t%s\n", target)
	fmt.Fprintf(tw, "endpoints\t%s\n", strings.Join(r.Endpoints, ","))
	fmt.Fprintf(tw, "workload\t%s\n", wl)
	fmt.Fprintf(tw, "concurrency\t%d\n", r.Concurrency)
	pre := ""
	if r.Prefilled {
		pre = fmt.Sprintf(", pre-filled in %.1fs", r.PrefillSeconds)
	}
	fmt.Fprintf(tw, "keys\t%d of %d B%s\n", r.Keys, r.ValueSize, pre)
	fmt.Fprintf(tw, "duration\t%.2fs\n", r.Seconds)
	fmt.Fprintf(tw, "operations\t%d\n", r.Ops)
	fmt.Fprintf(tw, "errors\t%d\n", r.Errors)
	fmt.Fprintf(tw, "throughput\t%.1f ops/s\n", r.Throughput)
	l := r.Latency
	fmt.Fprintf(tw, "latency\tp50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms (mean %.3f ms)\n",
		l.P50, l.P90, l.P99, l.Max, l.Mean)
	if r.ClientCPUSeconds > 0 && r.Ops > 0 {
		fmt.Fprintf(tw, "client cpu\t%.2fs (%.1f µs per operation, this process)\n",
			r.ClientCPUSeconds, r.ClientCPUSeconds/float64(r.Ops)*1e6)
	}
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(tw, "error\t%d× %s\n", s.Count, s.Message)
	}
	return tw.Flush()
}

// ProgressBar returns a Progress function that draws a one-line progress
// bar on w (a terminal), redrawing it in place, and ends the line when a
// phase is done.
func ProgressBar(w io.Writer) func(Progress) {
	const width = 30
	return func(p Progress) {
		n := int(p.Fraction * width)
		bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Ops) / s
		}
		fmt.Fprintf(w, "\r%-7s [%s] %3.0f%% %6.1fs %9d ops %9.0f ops/s %d errors\x1b[K",
			p.Phase, bar, p.Fraction*100, p.Elapsed.Seconds(), p.Ops, rate, p.Errors)
		if p.Done {
			fmt.Fprintln(w)
		}
	}
}
