package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/internal/h1"
	"github.com/cairn-kv/cairn/tests/bench/load"
)

// Drivers of `cairn bench`: how requests reach the cluster.
const (
	// driverHTTP sends bare HTTP/1.1 requests over keep-alive connections
	// of each worker's own (internal/h1; net/http for https endpoints): no
	// JSON, little client CPU, and no retries but the resend of a request
	// that found its keep-alive connection closed by the server.
	driverHTTP = "http"
	// driverClient goes through the Go client package, without retries.
	driverClient = "client"
)

// benchOptions are the flags of `cairn bench`; they map onto load.Config.
type benchOptions struct {
	endpoints []string
	load.Flags
	output   string
	progress bool
	driver   string
}

func newBenchCmd() *cobra.Command {
	o := &benchOptions{}
	d := load.DefaultConfig(load.WorkloadPut)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a cluster's throughput and latency",
		Long: `Load a running cluster with a closed-loop workload and report throughput
(successful operations per second), latency percentiles (p50, p90, p99, max)
and errors. --concurrency workers each send one request at a time, spread
round-robin over --endpoints (a follower forwards writes and linearizable
reads to the leader, as any client's requests would be); with fewer
workers than endpoints each worker rotates over all of them, request by
request, so a single worker measures leader and followers alike. Keys are
bench/000000 up to --keys, each picked uniformly at random; values are
--value-size bytes.

Workloads: put (writes), get (linearizable reads), stale (reads served by
whichever node answers, possibly stale) and mixed (--read-ratio linearizable
reads, writes otherwise). --prefill writes every key once, unmeasured,
before the run, so that reads find values.

The run lasts --duration, or until --count operations if that is given
first. It writes only under bench/ but it does write: point it at a test
cluster. A progress bar goes to standard error when that is a terminal (or
always with --progress). Ctrl-C stops early and reports what ran.
tests/bench/etcdload runs the same workloads against etcd with the same
flags and JSON output.`,
		Example: `  cairn bench --workload put --concurrency 64 --duration 30s
  cairn bench --endpoints 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003 --workload get --prefill -o json
  cairn bench --workload mixed --read-ratio 0.9 --count 100000 --value-size 1024`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.DurationSet = cmd.Flags().Changed("duration")
			return runBench(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.endpoints, "endpoints", client.DefaultConfig().Endpoints,
		"HTTP addresses of cluster members, comma-separated; workers are spread over them round-robin (env CAIRN_ENDPOINTS)")
	f.StringVar(&o.Workload, "workload", string(load.WorkloadPut), "put, get (linearizable), stale or mixed")
	f.IntVarP(&o.Concurrency, "concurrency", "c", d.Concurrency, "number of workers, each with one request in flight")
	f.DurationVar(&o.Duration, "duration", d.Duration, "how long the measured run lasts; with --count and no --duration, the count alone bounds the run")
	f.Int64Var(&o.Count, "count", 0, "stop after this many operations (0: no count limit)")
	f.IntVar(&o.ValueSize, "value-size", d.ValueSize, "size of each written value in bytes")
	f.IntVar(&o.Keys, "keys", d.Keys, "number of distinct keys (bench/000000...)")
	f.Float64Var(&o.ReadRatio, "read-ratio", d.ReadRatio, "fraction of reads in the mixed workload")
	f.BoolVar(&o.Prefill, "prefill", false, "write every key once before the run (unmeasured)")
	f.StringVarP(&o.output, "output", "o", outputTable, "output format: table (for people) or json (for scripts)")
	f.BoolVar(&o.progress, "progress", false, "draw the progress bar even when standard error is not a terminal")
	f.StringVar(&o.driver, "driver", driverHTTP, "http (bare HTTP/1.1 requests, little client CPU) or client (the Go client package)")
	f.DurationVar(&o.Timeout, "timeout", d.Timeout, "time limit of each operation")
	f.Uint64Var(&o.Seed, "seed", 0, "seed of the key choice and values (0: a fixed default)")
	_ = cmd.RegisterFlagCompletionFunc("workload", cobra.FixedCompletions(
		[]cobra.Completion{"put", "get", "stale", "mixed"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// config returns the load configuration the flags describe, without the
// operation.
func (o *benchOptions) config() (load.Config, error) {
	switch {
	case o.output != outputTable && o.output != outputJSON:
		return load.Config{}, fmt.Errorf("--output must be %s or %s, not %q", outputTable, outputJSON, o.output)
	case o.driver != driverHTTP && o.driver != driverClient:
		return load.Config{}, fmt.Errorf("--driver must be %s or %s, not %q", driverHTTP, driverClient, o.driver)
	case len(o.endpoints) == 0:
		return load.Config{}, errors.New("--endpoints: at least one is required")
	}
	return o.Flags.Config()
}

func runBench(ctx context.Context, stdout, stderr io.Writer, o *benchOptions) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	eps := make([]string, len(o.endpoints))
	for i, e := range o.endpoints {
		if eps[i], err = baseURL(e); err != nil {
			return err
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	hc := newBenchHTTPClient(o.Concurrency, len(eps))
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	if err := checkReady(ctx, hc, eps); err != nil {
		return err
	}
	switch o.driver {
	case driverHTTP:
		var closeConns func()
		cfg.OpFor, closeConns = httpOps(hc, eps, cfg.Concurrency)
		defer closeConns() // after load.Run
	case driverClient:
		if cfg.OpFor, err = clientOps(hc, eps, cfg.Concurrency, o.Timeout); err != nil {
			return err
		}
	}
	if o.progress || isTerminal(stderr) {
		cfg.Progress = load.ProgressBar(stderr)
	}
	res, runErr := load.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	res.Target, res.Driver, res.Endpoints = "cairn", o.driver, o.endpoints
	if o.output == outputJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteTable(stdout)
	}
	if runErr != nil {
		return fmt.Errorf("stopped early: %w", runErr)
	}
	return err
}

// baseURL turns an endpoint (host:port or an http(s) URL) into a base URL
// without a trailing slash.
func baseURL(ep string) (string, error) {
	ep = strings.TrimSpace(ep)
	if ep == "" {
		return "", errors.New("--endpoints: empty endpoint")
	}
	if !strings.Contains(ep, "://") {
		if _, _, err := net.SplitHostPort(ep); err != nil {
			return "", fmt.Errorf("--endpoints: %q is not host:port or a URL", ep)
		}
		return "http://" + ep, nil
	}
	if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
		return "", fmt.Errorf("--endpoints: %q: only http and https are supported", ep)
	}
	return strings.TrimRight(ep, "/"), nil
}

// newBenchHTTPClient returns one client for every worker: keep-alive
// connections, enough idle ones per endpoint that no worker ever has to
// dial again, no compression, no proxy, and redirects left alone.
func newBenchHTTPClient(concurrency, endpoints int) *http.Client {
	perHost := (concurrency+endpoints-1)/endpoints + 4
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no overall limit
		MaxIdleConnsPerHost:   max(perHost, concurrency),
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0, // each operation has its own timeout
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkReady fails unless every endpoint answers /readyz with 200.
func checkReady(ctx context.Context, hc *http.Client, eps []string) error {
	for _, ep := range eps {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, ep+"/readyz", nil)
		if err != nil {
			cancel()
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			return fmt.Errorf("endpoint %s is not reachable: %w", ep, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("endpoint %s is not ready: %s %s", ep, resp.Status, bytes.TrimSpace(b))
		}
	}
	return nil
}

// httpOps returns the lean driver: worker w talks to the endpoints
// load.Spread picks with bare HTTP/1.1 requests over keep-alive
// connections of its own (h1.Conn, one per endpoint it uses, dialed on
// first use), reading every body into a buffer of its own: far less
// client CPU per request than net/http, so that a benchmark sharing the
// servers' machine takes less of it from them. A 404 on a read is a valid
// answer, not an error. If any endpoint is https, every request goes
// through hc instead (netHTTPOps). The returned function closes the
// workers' connections; call it once load.Run has returned.
func httpOps(hc *http.Client, eps []string, workers int) (opFor func(int) load.OpFunc, closeConns func()) {
	hosts := make([]string, len(eps))   // host:port to dial
	kvPaths := make([]string, len(eps)) // path prefix of the keys
	for i, ep := range eps {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return netHTTPOps(hc, eps, workers), func() {}
		}
		hosts[i] = u.Host
		if u.Port() == "" {
			hosts[i] = net.JoinHostPort(u.Hostname(), "80")
		}
		kvPaths[i] = u.EscapedPath() + "/v1/kv/"
	}
	var mu sync.Mutex
	var all []*h1.Conn
	closeConns = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range all {
			_ = c.Close()
		}
		all = nil
	}
	opFor = func(w int) load.OpFunc {
		member := load.Spread(w, workers, len(eps))
		conns := make([]*h1.Conn, len(eps))
		var body []byte
		return func(ctx context.Context, key string, value []byte, kind load.Kind) error {
			m := member()
			c := conns[m]
			if c == nil {
				c = h1.New(hosts[m], 5*time.Second)
				conns[m] = c
				mu.Lock()
				all = append(all, c)
				mu.Unlock()
			}
			var status int
			var err error
			switch kind {
			case load.Put:
				status, body, err = c.Do(ctx, http.MethodPut, kvPaths[m]+key, value, body)
			case load.Get:
				status, body, err = c.Do(ctx, http.MethodGet, kvPaths[m]+key, nil, body)
			case load.StaleGet:
				status, body, err = c.Do(ctx, http.MethodGet, kvPaths[m]+key+"?consistency=stale", nil, body)
			default:
				return fmt.Errorf("unknown operation %v", kind)
			}
			if err != nil {
				return err
			}
			if status == http.StatusOK || (status == http.StatusNotFound && kind != load.Put) {
				return nil
			}
			return fmt.Errorf("%s: %s", kind, statusMessage(status, body[:min(len(body), 512)]))
		}
	}
	return opFor, closeConns
}

// netHTTPOps is the lean driver over net/http, for https endpoints:
// worker w talks to the endpoints load.Spread picks with bare requests,
// and drains every body into a buffer of its own so that the connection
// is reused. A 404 on a read is a valid answer, not an error.
func netHTTPOps(hc *http.Client, eps []string, workers int) func(int) load.OpFunc {
	kvBases := make([]string, len(eps))
	for i, ep := range eps {
		kvBases[i] = ep + "/v1/kv/"
	}
	return func(w int) load.OpFunc {
		member := load.Spread(w, workers, len(eps))
		buf := make([]byte, 32<<10)
		return func(ctx context.Context, key string, value []byte, kind load.Kind) error {
			kvBase := kvBases[member()]
			var req *http.Request
			var err error
			switch kind {
			case load.Put:
				req, err = http.NewRequestWithContext(ctx, http.MethodPut, kvBase+key, bytes.NewReader(value))
			case load.Get:
				req, err = http.NewRequestWithContext(ctx, http.MethodGet, kvBase+key, nil)
			case load.StaleGet:
				req, err = http.NewRequestWithContext(ctx, http.MethodGet, kvBase+key+"?consistency=stale", nil)
			default:
				return fmt.Errorf("unknown operation %v", kind)
			}
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (resp.StatusCode == http.StatusNotFound && kind != load.Put) {
				_, err = io.CopyBuffer(io.Discard, resp.Body, buf)
				return err
			}
			n, _ := io.ReadFull(resp.Body, buf[:512])
			_, _ = io.CopyBuffer(io.Discard, resp.Body, buf)
			return fmt.Errorf("%s: %s", kind, statusMessage(resp.StatusCode, buf[:n]))
		}
	}
}

// statusMessage shortens an error answer for the error samples: the
// status code and text ("503 Service Unavailable"), then the body.
func statusMessage(code int, body []byte) string {
	status := strconv.Itoa(code)
	if text := http.StatusText(code); text != "" {
		status += " " + text
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return status + " " + msg
}

// clientOps returns the driver that uses the Go client: one client per
// endpoint, sharing hc, each call made once (no retries, so no
// idempotency keys either).
func clientOps(hc *http.Client, eps []string, workers int, timeout time.Duration) (func(int) load.OpFunc, error) {
	clients := make([]*client.Client, len(eps))
	for i, ep := range eps {
		cfg := client.DefaultConfig()
		cfg.Endpoints = []string{ep}
		cfg.MaxRetries = -1
		cfg.Timeout = timeout
		cfg.HTTPClient = hc
		c, err := client.New(cfg)
		if err != nil {
			return nil, err
		}
		clients[i] = c
	}
	stale := client.WithConsistency(client.Stale)
	return func(w int) load.OpFunc {
		member := load.Spread(w, workers, len(clients))
		return func(ctx context.Context, key string, value []byte, kind load.Kind) error {
			c := clients[member()]
			var err error
			switch kind {
			case load.Put:
				_, err = c.Put(ctx, key, value)
			case load.Get:
				_, err = c.Get(ctx, key)
			case load.StaleGet:
				_, err = c.Get(ctx, key, stale)
			default:
				return fmt.Errorf("unknown operation %v", kind)
			}
			if errors.Is(err, client.ErrNotFound) {
				return nil
			}
			return err
		}
	}, nil
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
