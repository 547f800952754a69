package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/client/clienttest"
	"github.com/cairn-kv/cairn/tests/bench/load"
)

// benchFront is one fake endpoint in front of a shared in-memory store: it
// answers /readyz, counts what it is asked and can refuse writes.
type benchFront struct {
	srv *httptest.Server

	mu         sync.Mutex
	requests   map[string]int // by method, and "stale" for stale reads
	failWrites bool
	notReady   bool
}

func newBenchFront(t *testing.T, store *clienttest.Server) *benchFront {
	f := &benchFront{requests: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		fail, notReady := f.failWrites && r.Method == http.MethodPut, f.notReady
		if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			f.requests[r.Method]++
			if r.URL.Query().Get("consistency") == "stale" {
				f.requests["stale"]++
			}
		}
		f.mu.Unlock()
		switch {
		case r.URL.Path == "/readyz" && notReady:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"not ready","code":"not_ready"}`))
		case r.URL.Path == "/readyz":
			_, _ = w.Write([]byte(`{"status":"ready"}`))
		case fail:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"no leader","code":"no_leader"}`))
		default:
			store.Config.Handler.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *benchFront) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func (f *benchFront) count(what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[what]
}

// runBenchCLI runs `cairn bench args...` in-process.
func runBenchCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "cairn", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newBenchCmd())
	var out, errOut bytes.Buffer
	root.SetArgs(append([]string{"bench"}, args...))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func benchJSON(t *testing.T, args ...string) (*load.Result, string) {
	t.Helper()
	out, errOut, err := runBenchCLI(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("cairn bench %s: %v (stderr %q)", strings.Join(args, " "), err, errOut)
	}
	var res load.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not a result: %v\n%s", err, out)
	}
	return &res, errOut
}

func TestBenchWorkloads(t *testing.T) {
	for _, driver := range []string{driverHTTP, driverClient} {
		for _, tc := range []struct {
			workload string
			prefill  bool
			method   string
		}{
			{"put", false, http.MethodPut},
			{"get", true, http.MethodGet},
			{"stale", true, "stale"},
			{"mixed", false, http.MethodGet},
		} {
			t.Run(driver+"/"+tc.workload, func(t *testing.T) {
				store := clienttest.NewServer(t)
				a, b := newBenchFront(t, store), newBenchFront(t, store)
				args := []string{"--endpoints", a.addr() + "," + b.addr(), "--driver", driver,
					"--workload", tc.workload, "--concurrency", "4", "--count", "400", "--keys", "50", "--value-size", "32"}
				if tc.prefill {
					args = append(args, "--prefill")
				}
				res, stderr := benchJSON(t, args...)
				if res.Target != "cairn" || res.Driver != driver || string(res.Workload) != tc.workload || len(res.Endpoints) != 2 {
					t.Errorf("result header %+v", res)
				}
				if res.Ops != 400 || res.Errors != 0 || res.Throughput <= 0 || res.Latency.P99 <= 0 {
					t.Errorf("ops %d errors %d throughput %v p99 %v (%+v)", res.Ops, res.Errors, res.Throughput, res.Latency.P99, res.ErrorSamples)
				}
				// Workers 0 and 2 use the first endpoint, 1 and 3 the second.
				if a.count(tc.method) == 0 || b.count(tc.method) == 0 {
					t.Errorf("%s requests per endpoint: %d and %d, want both used", tc.method, a.count(tc.method), b.count(tc.method))
				}
				if tc.prefill {
					for i := range 50 {
						if v, ok := store.Value(load.Key(i)); !ok || len(v) != 32 {
							t.Fatalf("pre-fill left %s = %q, %v", load.Key(i), v, ok)
						}
					}
				}
				if stderr != "" {
					t.Errorf("progress bar drawn on a non-terminal: %q", stderr)
				}
			})
		}
	}
}

func TestBenchCountsErrors(t *testing.T) {
	store := clienttest.NewServer(t)
	f := newBenchFront(t, store)
	f.failWrites = true
	res, _ := benchJSON(t, "--endpoints", f.addr(), "--count", "50", "-c", "2")
	if res.Ops != 50 || res.Errors != 50 || res.Throughput != 0 || len(res.ErrorSamples) != 1 ||
		!strings.Contains(res.ErrorSamples[0].Message, "503") || !strings.Contains(res.ErrorSamples[0].Message, "no_leader") {
		t.Fatalf("result %+v", res)
	}
}

func TestBenchTableAndProgress(t *testing.T) {
	store := clienttest.NewServer(t)
	f := newBenchFront(t, store)
	out, stderr, err := runBenchCLI(t, "--endpoints", f.addr(), "--count", "100", "--progress", "--workload", "get", "--prefill", "--keys", "20")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"throughput", "ops/s", "p50", "p90", "p99", "max", "errors", "cairn (http)"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if !strings.Contains(stderr, "prefill") || !strings.Contains(stderr, "run") || !strings.Contains(stderr, "100%") {
		t.Errorf("progress bar %q", stderr)
	}
}

func TestBenchRejects(t *testing.T) {
	store := clienttest.NewServer(t)
	f := newBenchFront(t, store)
	notReady := newBenchFront(t, store)
	notReady.notReady = true
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workload", "scan"}, "unknown workload"},
		{[]string{"-o", "yaml"}, "--output"},
		{[]string{"--driver", "grpc"}, "--driver"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--duration", "0", "--count", "0"}, "--duration or --count"},
		{[]string{"--workload", "mixed", "--read-ratio", "1.5"}, "--read-ratio"},
		{[]string{"--endpoints", "ftp://x:1"}, "only http"},
		{[]string{"--endpoints", "nohost"}, "not host:port"},
		{[]string{"--endpoints", notReady.addr()}, "not ready"},
		{[]string{"--endpoints", "127.0.0.1:1"}, "not reachable"},
	} {
		args := append([]string{"--endpoints", f.addr(), "--count", "1"}, tc.args...)
		if _, _, err := runBenchCLI(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v: err %v, want %q", tc.args, err, tc.want)
		}
	}
	if f.count(http.MethodPut) != 0 {
		t.Errorf("rejected runs sent %d writes", f.count(http.MethodPut))
	}
}
