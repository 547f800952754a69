// Command etcdload runs cairn's benchmark workloads against etcd, through
// etcd's own Go client, so that cairn and etcd are measured by the same load
// generator (tests/bench/load) with the same flags and the same JSON output
// as `cairn bench -o json`.
//
// It is a module of its own so that the root module does not depend on
// etcd's client: build it with
//
//	cd tests/bench/etcdload && go build -o /tmp/etcdload .
//
// Workloads: put (Put), get (linearizable Get), stale (Get with
// WithSerializable, served by whichever member answers) and mixed. Workers
// are spread round-robin over --conns clients, and the clients round-robin
// over --endpoints, each client dialing one member, much as etcd's own
// benchmark tool does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"

	"github.com/cairn-kv/cairn/tests/bench/load"
)

// options are etcdload's flags, the same as cairn bench's plus --conns.
type options struct {
	endpoints []string
	load.Flags
	output   string
	progress bool
	conns    int
}

// endpointsFlag is a comma-separated, repeatable list of endpoints.
type endpointsFlag struct {
	p   *[]string
	set bool
}

func (f *endpointsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f *endpointsFlag) Set(s string) error {
	if !f.set {
		*f.p, f.set = nil, true
	}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*f.p = append(*f.p, e)
		}
	}
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{endpoints: []string{"127.0.0.1:2379"}}
	if env := os.Getenv("ETCDCTL_ENDPOINTS"); env != "" {
		o.endpoints = strings.Split(env, ",")
	}
	d := load.DefaultConfig(load.WorkloadPut)
	fs := flag.NewFlagSet("etcdload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&endpointsFlag{p: &o.endpoints}, "endpoints", "etcd client addresses, comma-separated; workers are spread over them round-robin (env ETCDCTL_ENDPOINTS)")
	fs.StringVar(&o.Workload, "workload", string(load.WorkloadPut), "put, get (linearizable), stale (serializable) or mixed")
	fs.IntVar(&o.Concurrency, "concurrency", d.Concurrency, "number of workers, each with one request in flight")
	fs.IntVar(&o.Concurrency, "c", d.Concurrency, "shorthand for --concurrency")
	fs.DurationVar(&o.Duration, "duration", d.Duration, "how long the measured run lasts; with --count and no --duration, the count alone bounds the run")
	fs.Int64Var(&o.Count, "count", 0, "stop after this many operations (0: no count limit)")
	fs.IntVar(&o.ValueSize, "value-size", d.ValueSize, "size of each written value in bytes")
	fs.IntVar(&o.Keys, "keys", d.Keys, "number of distinct keys (bench/000000...)")
	fs.Float64Var(&o.ReadRatio, "read-ratio", d.ReadRatio, "fraction of reads in the mixed workload")
	fs.BoolVar(&o.Prefill, "prefill", false, "write every key once before the run (unmeasured)")
	fs.StringVar(&o.output, "output", "table", "output format: table or json")
	fs.StringVar(&o.output, "o", "table", "shorthand for --output")
	fs.BoolVar(&o.progress, "progress", false, "draw the progress bar even when standard error is not a terminal")
	fs.DurationVar(&o.Timeout, "timeout", d.Timeout, "time limit of each operation")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the key choice and values (0: a fixed default)")
	fs.IntVar(&o.conns, "conns", 0, "number of etcd clients (gRPC connections) the workers share (0: one per endpoint)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { o.DurationSet = o.DurationSet || f.Name == "duration" })
	return o, nil
}

func (o *options) config() (load.Config, error) {
	switch {
	case o.output != "table" && o.output != "json":
		return load.Config{}, fmt.Errorf("--output must be table or json, not %q", o.output)
	case len(o.endpoints) == 0:
		return load.Config{}, errors.New("--endpoints: at least one is required")
	case o.conns < 0:
		return load.Config{}, fmt.Errorf("--conns must not be negative, got %d", o.conns)
	}
	return o.Flags.Config()
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// gRPC's own logging would scribble over the progress bar and the
	// output; failures show up as counted errors instead.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	conns := o.conns
	if conns == 0 {
		conns = len(o.endpoints)
	}
	clients := make([]*clientv3.Client, conns)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range clients {
		ep := o.endpoints[i%len(o.endpoints)]
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("connect to %s: %w", ep, err)
		}
		clients[i] = c
		if i < len(o.endpoints) {
			if err := checkReady(ctx, c, ep); err != nil {
				return err
			}
		}
	}
	kvs := make([]clientv3.KV, len(clients))
	for i, c := range clients {
		kvs[i] = clientv3.NewKV(c)
	}
	cfg.OpFor = func(w int) load.OpFunc {
		member := load.Spread(w, cfg.Concurrency, len(kvs))
		serializable := clientv3.WithSerializable()
		return func(ctx context.Context, key string, value []byte, kind load.Kind) error {
			kv := kvs[member()]
			var err error
			switch kind {
			case load.Put:
				_, err = kv.Put(ctx, key, string(value))
			case load.Get:
				_, err = kv.Get(ctx, key)
			case load.StaleGet:
				_, err = kv.Get(ctx, key, serializable)
			default:
				err = fmt.Errorf("unknown operation %v", kind)
			}
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
	res.Target, res.Driver, res.Endpoints = "etcd", "grpc", o.endpoints
	if o.output == "json" {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteTable(stdout)
	}
	if runErr != nil {
		return fmt.Errorf("stopped early: %w", runErr)
	}
	return err
}

// checkReady fails unless the member at ep answers and knows a leader.
func checkReady(ctx context.Context, c *clientv3.Client, ep string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx, ep)
	if err != nil {
		return fmt.Errorf("endpoint %s is not reachable: %w", ep, err)
	}
	if st.Leader == 0 {
		return fmt.Errorf("endpoint %s has no leader", ep)
	}
	return nil
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
