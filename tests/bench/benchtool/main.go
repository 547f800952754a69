// Command benchtool is scripts/bench.sh's helper, so that the script needs
// neither curl nor jq: it waits for endpoints, bulk-loads cairn through
// transactions, and turns the JSON results of cairn bench and etcdload into
// a Markdown table. It only ever talks to the addresses it is given.
//
//	benchtool wait [-timeout 60s] URL...          poll until each URL answers 200; print the seconds taken
//	benchtool members [-timeout 60s] -n N ENDPOINT poll until ENDPOINT lists N members, each with its HTTP address
//	benchtool get URL                              print the body of a GET
//	benchtool fill -endpoints E,... -keys N ...    write bench/000000.. through POST /v1/txn in batches
//	benchtool report DIR                           print the Markdown comparison of DIR/*.cairn.json and *.etcd.json (NAME.rK.* for rounds)
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
	"regexp"
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

// roundName matches a result of one round: NAME.rK (bench.sh runs each
// case BENCH_ROUNDS times, cairn and etcd back to back each time).
var roundName = regexp.MustCompile(`^(.+)\.r([0-9]+)$`)

// benchCase is the results of one case: for each round, cairn's and
// etcd's (nil when etcd was not run), with the servers' CPU seconds read
// from the .cpu files beside them.
type benchCase struct {
	rounds []pair
}

type pair struct{ c, e *load.Result }

// collect reads DIR/NAME.cairn.json or DIR/NAME.rK.cairn.json and the
// etcd results beside them, grouped by NAME in the order of the names.
func collect(dir string) ([]*benchCase, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.cairn.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("report: no *.cairn.json in %s", dir)
	}
	sort.Slice(files, func(i, j int) bool { return roundKey(files[i]) < roundKey(files[j]) })
	var cases []*benchCase
	byName := map[string]*benchCase{}
	for _, f := range files {
		base := strings.TrimSuffix(f, ".cairn.json")
		name := filepath.Base(base)
		if m := roundName.FindStringSubmatch(name); m != nil {
			name = m[1]
		}
		c, err := readResult(f)
		if err != nil {
			return nil, err
		}
		c.ServerCPUSeconds = readCPU(base + ".cairn.cpu")
		e, err := readResult(base + ".etcd.json")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if e != nil {
			e.ServerCPUSeconds = readCPU(base + ".etcd.cpu")
		}
		bc := byName[name]
		if bc == nil {
			bc = &benchCase{}
			byName[name] = bc
			cases = append(cases, bc)
		}
		bc.rounds = append(bc.rounds, pair{c, e})
	}
	return cases, nil
}

// roundKey sorts results by case name, then by round number.
func roundKey(path string) string {
	name := strings.TrimSuffix(filepath.Base(path), ".cairn.json")
	if m := roundName.FindStringSubmatch(name); m != nil {
		n, _ := strconv.Atoi(m[2])
		return fmt.Sprintf("%s\x00%06d", m[1], n)
	}
	return name + "\x00"
}

// report prints one Markdown row per case. With several rounds, each
// figure is the median over the rounds and each ratio the median of the
// rounds' ratios (cairn and etcd measured back to back), so that the
// machine's drift between rounds cancels out; the last column lists every
// round's throughput ratio. CPU per operation is over all rounds.
func report(args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("report: want one directory")
	}
	cases, err := collect(args[0])
	if err != nil {
		return err
	}
	tput := func(r *load.Result) float64 { return r.Throughput }
	p50 := func(r *load.Result) float64 { return r.Latency.P50 }
	p99 := func(r *load.Result) float64 { return r.Latency.P99 }
	fmt.Fprintln(out, "| workload | clients | cairn ops/s | etcd ops/s | throughput cairn/etcd | cairn p50 / p99 ms | etcd p50 / p99 ms | p50 cairn/etcd | p99 cairn/etcd | throughput cairn/etcd by round |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, bc := range cases {
		cs, es := bc.results()
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			workloadName(cs[0]), cs[0].Concurrency,
			opsOf(cs), opsOf(es), bc.ratio(tput),
			latOf(cs), latOf(es), bc.ratio(p50), bc.ratio(p99), bc.byRound(tput))
	}
	// CPU per operation: what each system's three servers, and its load
	// generator, spent on one operation, whatever the throughput. Only
	// when something measured it.
	measured := false
	for _, bc := range cases {
		for _, r := range bc.rounds {
			measured = measured || r.c.ServerCPUSeconds > 0 || r.c.ClientCPUSeconds > 0
		}
	}
	if !measured {
		return nil
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| workload | clients | servers' CPU µs/op cairn | etcd | cairn/etcd | load generator CPU µs/op cairn | etcd |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, bc := range cases {
		cs, es := bc.results()
		cSrv, eSrv := perOpValue(cs, serverCPU), perOpValue(es, serverCPU)
		cRatio := "—"
		if cSrv > 0 && eSrv > 0 {
			cRatio = fmt.Sprintf("%.2f×", cSrv/eSrv)
		}
		fmt.Fprintf(out, "| %s | %d | %s | %s | %s | %s | %s |\n",
			workloadName(cs[0]), cs[0].Concurrency,
			perOpText(cSrv), perOpText(eSrv), cRatio,
			perOpText(perOpValue(cs, clientCPU)), perOpText(perOpValue(es, clientCPU)))
	}
	return nil
}

// results returns cairn's results of every round and etcd's of the rounds
// that have one.
func (bc *benchCase) results() (cs, es []*load.Result) {
	for _, r := range bc.rounds {
		cs = append(cs, r.c)
		if r.e != nil {
			es = append(es, r.e)
		}
	}
	return cs, es
}

// roundRatios is cairn's figure over etcd's in each round that has both.
func (bc *benchCase) roundRatios(f func(*load.Result) float64) []float64 {
	var out []float64
	for _, r := range bc.rounds {
		if r.e != nil && f(r.e) != 0 {
			out = append(out, f(r.c)/f(r.e))
		}
	}
	return out
}

// ratio is the median of the rounds' ratios.
func (bc *benchCase) ratio(f func(*load.Result) float64) string {
	rs := bc.roundRatios(f)
	if len(rs) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", median(rs))
}

// byRound lists the rounds' ratios in the order they ran.
func (bc *benchCase) byRound(f func(*load.Result) float64) string {
	rs := bc.roundRatios(f)
	if len(rs) == 0 {
		return "—"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(parts, ", ")
}

// median of xs (the mean of the middle two for an even count); it sorts
// xs.
func median(xs []float64) float64 {
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func medianOf(rs []*load.Result, f func(*load.Result) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

func opsOf(rs []*load.Result) string {
	if len(rs) == 0 {
		return "—"
	}
	s := fmt.Sprintf("%.0f", medianOf(rs, func(r *load.Result) float64 { return r.Throughput }))
	var errs int64
	for _, r := range rs {
		errs += r.Errors
	}
	if errs > 0 {
		s += fmt.Sprintf(" (%d errors)", errs)
	}
	return s
}

func latOf(rs []*load.Result) string {
	if len(rs) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f / %.2f",
		medianOf(rs, func(r *load.Result) float64 { return r.Latency.P50 }),
		medianOf(rs, func(r *load.Result) float64 { return r.Latency.P99 }))
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

func serverCPU(r *load.Result) float64 { return r.ServerCPUSeconds }

func clientCPU(r *load.Result) float64 { return r.ClientCPUSeconds }

// perOpValue is the seconds cpu gives for rs, over their operations, in
// microseconds (rounds without a figure left out); 0 when unknown.
func perOpValue(rs []*load.Result, cpu func(*load.Result) float64) float64 {
	var secs float64
	var n int64
	for _, r := range rs {
		if c := cpu(r); c > 0 {
			secs += c
			n += r.Ops
		}
	}
	if n == 0 || secs <= 0 {
		return 0
	}
	return secs / float64(n) * 1e6
}

func perOpText(v float64) string {
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
