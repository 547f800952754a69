// Command benchtool is scripts/bench.sh's helper, so that the script needs
// neither curl nor jq: it waits for endpoints, bulk-loads cairn through
// transactions, and turns the JSON results of cairn bench and etcdload into
// a Markdown table. It only ever talks to the addresses it is given.
//
//	benchtool wait [-timeout 60s] URL...          poll until each URL answers 200; print the seconds taken
//	benchtool members [-timeout 60s] -n N ENDPOINT poll until ENDPOINT lists N members, each with its HTTP address
//	benchtool get URL                              print the body of a GET
//	benchtool fill -endpoints E,... -keys N ...    write bench/000000.. through POST /v1/txn in batches
//	benchtool report DIR                           print the Markdown comparison of DIR/*.cairn.json and *.etcd.json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-kv/cairn/tests/bench/load"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool wait|members|get|fill|report ...")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "wait":
		err = wait(args)
	case "members":
		err = members(args)
	case "get":
		err = get(args)
	case "fill":
		err = fill(args)
	case "report":
		err = report(args, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

var hc = &http.Client{Timeout: 5 * time.Second}

// fetch GETs url and returns the status and body.
func fetch(url string) (int, []byte, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	for _, u := range fs.Args() {
		for {
			code, body, err := fetch(u)
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready after %v: status %d %s %v", u, *timeout, code, bytes.TrimSpace(body), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Printf("%.3f\n", time.Since(start).Seconds())
	return nil
}

func members(args []string) error {
	fs := flag.NewFlagSet("members", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	n := fs.Int("n", 3, "number of members expected")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("members: want one endpoint")
	}
	deadline := time.Now().Add(*timeout)
	var last string
	for time.Now().Before(deadline) {
		code, body, err := fetch("http://" + fs.Arg(0) + "/v1/cluster/members")
		if err == nil && code == http.StatusOK {
			var m struct {
				Members []struct {
					HTTPAddr string `json:"http_addr"`
				} `json:"members"`
			}
			if json.Unmarshal(body, &m) == nil && len(m.Members) == *n {
				ok := true
				for _, x := range m.Members {
					ok = ok && x.HTTPAddr != ""
				}
				if ok {
					return nil
				}
			}
		}
		last = fmt.Sprintf("status %d %s %v", code, bytes.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s does not list %d members with HTTP addresses after %v: %s", fs.Arg(0), *n, *timeout, last)
}

func get(args []string) error {
	if len(args) != 1 {
		return errors.New("get: want one URL")
	}
	code, body, err := fetch(args[0])
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: status %d %s", args[0], code, bytes.TrimSpace(body))
	}
	_, err = os.Stdout.Write(append(body, '\n'))
	return err
}

// fill writes keys 0..N-1 in transactions of -batch puts, -c at a time,
// spread over the endpoints; each transaction is retried a few times.
func fill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	eps := fs.String("endpoints", "127.0.0.1:8001", "cairn HTTP addresses, comma-separated")
	keys := fs.Int("keys", 1_000_000, "number of keys")
	size := fs.Int("value-size", 256, "value size in bytes")
	batch := fs.Int("batch", 128, "puts per transaction (at most 128)")
	conc := fs.Int("c", 16, "transactions in flight")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	endpoints := strings.Split(*eps, ",")
	value := strings.Repeat("v", *size)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	type op struct {
		Op    string `json:"op"`
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *conc {
		wg.Go(func() {
			url := "http://" + endpoints[w%len(endpoints)] + "/v1/txn"
			for ctx.Err() == nil {
				lo := int(next.Add(int64(*batch))) - *batch
				if lo >= *keys {
					return
				}
				hi := min(lo+*batch, *keys)
				ops := make([]op, 0, hi-lo)
				for i := lo; i < hi; i++ {
					ops = append(ops, op{Op: "put", Key: load.Key(i), Value: value})
				}
				body, _ := json.Marshal(map[string]any{"success": ops})
				var err error
				for range 5 {
					if err = post(ctx, client, url, body); err == nil {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					cancel()
					return
				}
				if n := done.Add(int64(hi - lo)); n/100_000 != (n-int64(hi-lo))/100_000 {
					fmt.Fprintf(os.Stderr, "fill: %d keys, %.0f keys/s\n", n, float64(n)/time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	fmt.Printf("%d keys of %d B in %.1fs (%.0f keys/s)\n", *keys, *size, el, float64(*keys)/el)
	return nil
}

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// report prints one Markdown row per case: DIR/NAME.cairn.json beside
// DIR/NAME.etcd.json (which may be missing), in the order of the names.
func report(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("report: want one directory")
	}
	files, err := filepath.Glob(filepath.Join(args[0], "*.cairn.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("report: no *.cairn.json in %s", args[0])
	}
	sort.Strings(files)
	type pair struct{ c, e *load.Result }
	var rows []pair
	fmt.Fprintln(out, "| workload | clients | cairn ops/s | etcd ops/s | throughput cairn/etcd | cairn p50 / p99 ms | etcd p50 / p99 ms | p50 cairn/etcd | p99 cairn/etcd |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, f := range files {
		c, err := readResult(f)
		if err != nil {
			return err
		}
		e, err := readResult(strings.TrimSuffix(f, ".cairn.json") + ".etcd.json")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n",
			workloadName(c), c.Concurrency,
			ops(c), ops(e), ratio(c, e, func(r *load.Result) float64 { return r.Throughput }),
			lat(c), lat(e),
			ratio(c, e, func(r *load.Result) float64 { return r.Latency.P50 }),
			ratio(c, e, func(r *load.Result) float64 { return r.Latency.P99 }))
		c.ServerCPUSeconds = readCPU(strings.TrimSuffix(f, ".json") + ".cpu")
		if e != nil {
			e.ServerCPUSeconds = readCPU(strings.TrimSuffix(f, ".cairn.json") + ".etcd.cpu")
		}
		rows = append(rows, pair{c, e})
	}
	// CPU per operation: what each system's three servers, and its load
	// generator, spent on one operation, whatever the throughput. Only
	// when something measured it.
	measured := false
	for _, r := range rows {
		measured = measured || r.c.ServerCPUSeconds > 0 || r.c.ClientCPUSeconds > 0
	}
	if !measured {
		return nil
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| workload | clients | servers' CPU µs/op cairn | etcd | cairn/etcd | load generator CPU µs/op cairn | etcd |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s | %s |\n",
			workloadName(r.c), r.c.Concurrency,
			perOp(r.c, r.c.ServerCPUSeconds), perOp(r.e, serverCPU(r.e)),
			ratio(r.c, r.e, func(x *load.Result) float64 { return perOpValue(x, x.ServerCPUSeconds) }),
			perOp(r.c, r.c.ClientCPUSeconds), perOp(r.e, clientCPU(r.e)))
	}
	return nil
}

// readCPU reads the servers' CPU seconds bench.sh wrote beside a result;
// 0 when there is none.
func readCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

func serverCPU(r *load.Result) float64 {
	if r == nil {
		return 0
	}
	return r.ServerCPUSeconds
}

func clientCPU(r *load.Result) float64 {
	if r == nil {
		return 0
	}
	return r.ClientCPUSeconds
}

// perOpValue is seconds spread over r's operations, in microseconds; 0 when
// unknown.
func perOpValue(r *load.Result, seconds float64) float64 {
	if r == nil || r.Ops == 0 || seconds <= 0 {
		return 0
	}
	return seconds / float64(r.Ops) * 1e6
}

func perOp(r *load.Result, seconds float64) string {
	v := perOpValue(r, seconds)
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

func readResult(path string) (*load.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r load.Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func workloadName(r *load.Result) string {
	switch r.Workload {
	case load.WorkloadPut:
		return "write (put)"
	case load.WorkloadGet:
		return "linearizable read"
	case load.WorkloadStale:
		return "stale / serializable read"
	case load.WorkloadMixed:
		return fmt.Sprintf("mixed %.0f%% read", r.ReadRatio*100)
	}
	return string(r.Workload)
}

func ops(r *load.Result) string {
	if r == nil {
		return "—"
	}
	s := fmt.Sprintf("%.0f", r.Throughput)
	if r.Errors > 0 {
		s += fmt.Sprintf(" (%d errors)", r.Errors)
	}
	return s
}

func lat(r *load.Result) string {
	if r == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f / %.2f", r.Latency.P50, r.Latency.P99)
}

func ratio(c, e *load.Result, f func(*load.Result) float64) string {
	if c == nil || e == nil || f(e) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", f(c)/f(e))
}
