package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/bench/load"
)

func writeResult(t *testing.T, path string, r load.Result) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	put := load.Result{Workload: load.WorkloadPut, Concurrency: 64, Throughput: 3000, Latency: load.Latency{P50: 20, P99: 60}}
	writeResult(t, filepath.Join(dir, "1-put.cairn.json"), put)
	put.Throughput, put.Latency = 6000, load.Latency{P50: 10, P99: 30}
	writeResult(t, filepath.Join(dir, "1-put.etcd.json"), put)
	// A case without etcd figures, as when etcd is not installed.
	writeResult(t, filepath.Join(dir, "2-stale.cairn.json"), load.Result{Workload: load.WorkloadStale, Concurrency: 64, Throughput: 20000, Errors: 3})

	var out bytes.Buffer
	if err := report([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header, a rule and two rows:\n%s", out.String())
	}
	want1 := "| write (put) | 64 | 3000 | 6000 | 0.50× | 20.00 / 60.00 | 10.00 / 30.00 | 2.00× | 2.00× | 0.50 |"
	want2 := "| stale / serializable read | 64 | 20000 (3 errors) | — | — | 0.00 / 0.00 | — | — | — | — |"
	if lines[2] != want1 || lines[3] != want2 {
		t.Errorf("rows:\n%s\n%s\nwant:\n%s\n%s", lines[2], lines[3], want1, want2)
	}
	if err := report([]string{t.TempDir()}, &out); err == nil {
		t.Error("an empty directory must be an error")
	}
}

// With CPU figures (the load generator's in the results, the servers' in
// bench.sh's .cpu files), a second table gives each per operation.
func TestReportCPU(t *testing.T) {
	dir := t.TempDir()
	put := load.Result{Workload: load.WorkloadPut, Concurrency: 64, Throughput: 1000, Ops: 10000, ClientCPUSeconds: 0.3}
	writeResult(t, filepath.Join(dir, "1-put.cairn.json"), put)
	put.Ops, put.ClientCPUSeconds = 20000, 0.8
	writeResult(t, filepath.Join(dir, "1-put.etcd.json"), put)
	for name, v := range map[string]string{"1-put.cairn.cpu": "1.500\n", "1-put.etcd.cpu": "4.000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := report([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	want := "| write (put) | 64 | 150.0 | 200.0 | 0.75× | 30.0 | 40.0 |"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("want the row %q in:\n%s", want, out.String())
	}
}

// With rounds (NAME.rK.*), each figure is the median over the rounds, each
// ratio the median of the rounds' own ratios (not the ratio of medians),
// the rounds' throughput ratios are listed in order, and CPU per operation
// is over every round.
func TestReportRounds(t *testing.T) {
	dir := t.TempDir()
	// cairn/etcd throughput by round: 2.0, 1.0, 1.6 (median 1.6); the
	// ratio of the medians would be 1500/1000 = 1.5.
	for i, tc := range []struct{ c, e float64 }{{2000, 1000}, {1000, 1000}, {1500, 937.5}} {
		for sys, tp := range map[string]float64{"cairn": tc.c, "etcd": tc.e} {
			r := load.Result{Workload: load.WorkloadPut, Concurrency: 64, Throughput: tp, Ops: 1000,
				Latency: load.Latency{P50: float64(i + 1), P99: float64(10 * (i + 1))}}
			writeResult(t, filepath.Join(dir, fmt.Sprintf("2-put-c64.r%d.%s.json", i+1, sys)), r)
			cpu := map[string]string{"cairn": "0.1", "etcd": "0.2"}[sys]
			if i == 2 {
				cpu = map[string]string{"cairn": "0.4", "etcd": "0.2"}[sys]
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("2-put-c64.r%d.%s.cpu", i+1, sys)), []byte(cpu), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A tenth round must sort after the second.
	writeResult(t, filepath.Join(dir, "1-put-c1.r10.cairn.json"), load.Result{Workload: load.WorkloadPut, Concurrency: 1, Throughput: 300, Ops: 1})
	writeResult(t, filepath.Join(dir, "1-put-c1.r10.etcd.json"), load.Result{Workload: load.WorkloadPut, Concurrency: 1, Throughput: 100, Ops: 1})
	writeResult(t, filepath.Join(dir, "1-put-c1.r2.cairn.json"), load.Result{Workload: load.WorkloadPut, Concurrency: 1, Throughput: 200, Ops: 1})
	writeResult(t, filepath.Join(dir, "1-put-c1.r2.etcd.json"), load.Result{Workload: load.WorkloadPut, Concurrency: 1, Throughput: 100, Ops: 1})

	var out bytes.Buffer
	if err := report([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"| write (put) | 1 | 250 | 100 | 2.50× | 0.00 / 0.00 | 0.00 / 0.00 | — | — | 2.00, 3.00 |",
		"| write (put) | 64 | 1500 | 1000 | 1.60× | 2.00 / 20.00 | 2.00 / 20.00 | 1.00× | 1.00× | 2.00, 1.00, 1.60 |",
	}
	if len(lines) < 4 || lines[2] != want[0] || lines[3] != want[1] {
		t.Fatalf("rows:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
	// A fourth round without servers' CPU figures counts in neither sum.
	for sys, tp := range map[string]float64{"cairn": 100, "etcd": 100} {
		writeResult(t, filepath.Join(dir, "2-put-c64.r4."+sys+".json"), load.Result{Workload: load.WorkloadPut, Concurrency: 64, Throughput: tp, Ops: 5000})
	}
	out.Reset()
	if err := report([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	// Servers' CPU: cairn 0.6 s over 3000 ops = 200 µs, etcd 0.6 s = 200 µs.
	if row := "| write (put) | 64 | 200.0 | 200.0 | 1.00× |"; !strings.Contains(out.String(), row) {
		t.Errorf("want the CPU row %q in:\n%s", row, out.String())
	}
}
