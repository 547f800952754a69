package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/httpapi"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
)

// serverOptions are the flags of `cairn server`.
type serverOptions struct {
	id                string
	dataDir           string
	httpAddr          string
	httpAdvertiseAddr string
	raftAddr          string
	raftAdvertiseAddr string
	bootstrap         bool
	join              []string
	initialCluster    string
	maxValueSize      int64
	requestTimeout    time.Duration
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	trailingLogs      uint64
	heartbeatTimeout  time.Duration
	electionTimeout   time.Duration
	logLevel          string
	logFormat         string
	raftLogLevel      string
	fsmFsync          bool
	fsmCommitInterval time.Duration
	pprofAddr         string
	maxInflight       int
}

func newServerCmd() *cobra.Command {
	o := &serverOptions{}
	rd := raftnode.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a cairn node",
		Long: `Run one cairn node: a Raft member with its BoltDB state machine and the
HTTP API. Start the first node with --bootstrap and the others with --join
(any member's HTTP address), or all of them with the same --initial-cluster.
Restarting a node with the same --data-dir rejoins it with its data.
SIGINT or SIGTERM stops the node cleanly; a leader hands leadership on first.

Unless GOGC is set, the Go garbage collector runs with GOGC=400, and
unless GOMEMLIMIT is set, with a soft memory limit of 192 MiB: a node's
own heap is small (the data lives in BoltDB's memory map), so the default
of 100 makes it collect many times a second under load, while the limit
keeps the heap from growing to five times what is live when that is
large. GOGC and GOMEMLIMIT in the environment take precedence as usual.`,
		Example: `  cairn server --id n1 --data-dir data/n1 --http-addr 127.0.0.1:8001 --raft-addr 127.0.0.1:9001 --bootstrap
  cairn server --id n2 --data-dir data/n2 --http-addr 127.0.0.1:8002 --raft-addr 127.0.0.1:9002 --join 127.0.0.1:8001
  cairn server --id n3 --data-dir data/n3 --http-addr 127.0.0.1:8003 --raft-addr 127.0.0.1:9003 --join 127.0.0.1:8001,127.0.0.1:8002`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServer(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "this node's unique ID (required)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for this node's data (required)")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8001", "address the HTTP API listens on")
	f.StringVar(&o.httpAdvertiseAddr, "http-advertise-addr", "", "HTTP address other nodes and clients use (default --http-addr)")
	f.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:9001", "address the Raft transport listens on")
	f.StringVar(&o.raftAdvertiseAddr, "raft-advertise-addr", "", "Raft address other nodes dial, e.g. behind NAT or a proxy (default --raft-addr)")
	f.BoolVar(&o.bootstrap, "bootstrap", false, "make a one-member cluster if the data dir is empty (no-op on restart)")
	f.StringSliceVar(&o.join, "join", nil, "HTTP addresses of members to join through (comma-separated); retried until this node is a member")
	f.StringVar(&o.initialCluster, "initial-cluster", "", "bootstrap all members at once: id=raftaddr,id=raftaddr,...")
	f.Int64Var(&o.maxValueSize, "max-value-size", 1<<20, "largest value accepted, in bytes")
	f.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Second, "time limit of each request")
	f.Uint64Var(&o.snapshotThreshold, "snapshot-threshold", rd.SnapshotThreshold, "Raft log entries between snapshots")
	f.DurationVar(&o.snapshotInterval, "snapshot-interval", rd.SnapshotInterval, "how often the snapshot threshold is checked")
	f.Uint64Var(&o.trailingLogs, "trailing-logs", rd.TrailingLogs, "log entries kept after a snapshot for slow followers")
	f.DurationVar(&o.heartbeatTimeout, "heartbeat-timeout", rd.HeartbeatTimeout, "follower timeout before an election")
	f.DurationVar(&o.electionTimeout, "election-timeout", rd.ElectionTimeout, "candidate timeout during an election")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.raftLogLevel, "raft-log-level", rd.RaftLogLevel, "hashicorp/raft's own log level")
	f.IntVar(&o.maxInflight, "max-inflight-proposals", rd.MaxInflightProposals, "log entries of writes in flight before further writes are packed into one (group commit)")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof profiles on this address (off when empty; keep it private)")
	f.BoolVar(&o.fsmFsync, "fsm-fsync", false, "fsync the state machine's file on every commit (the Raft log is always fsynced; see store/DESIGN.md)")
	f.DurationVar(&o.fsmCommitInterval, "fsm-commit-interval", store.DefaultCommitInterval, "how long applied writes may wait before the state machine's file is committed (reads see them at once; the Raft log holds them meanwhile); 0 commits every batch")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func parseInitialCluster(s string) ([]raftnode.Peer, error) {
	if s == "" {
		return nil, nil
	}
	var peers []raftnode.Peer
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not id=raftaddr", part)
		}
		peers = append(peers, raftnode.Peer{ID: id, RaftAddr: addr})
	}
	return peers, nil
}

// defaultGCPercent is the garbage collector's target percentage of heap
// growth when GOGC is not set, and defaultMemoryLimit its soft limit when
// GOMEMLIMIT is not: measured at 256 clients, GOGC=200 cut the servers'
// CPU per write by a fifth against 100, and 400 by a sixth more; the limit
// keeps a node under 300 MiB resident with 1,000,000 keys.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 192 << 20
)

func runServer(ctx context.Context, o *serverOptions) error {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if o.id == "" {
		return errors.New("--id is required")
	}
	if o.dataDir == "" {
		return errors.New("--data-dir is required")
	}
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	log = log.With("node", o.id)
	slog.SetDefault(log)
	peers, err := parseInitialCluster(o.initialCluster)
	if err != nil {
		return err
	}
	if o.httpAdvertiseAddr == "" {
		o.httpAdvertiseAddr = o.httpAddr
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}

	// Listen first so a busy port fails before anything is written.
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-addr: %w", err)
	}
	defer ln.Close()

	scfg := store.DefaultConfig(filepath.Join(o.dataDir, "fsm.db"))
	scfg.Logger = log
	scfg.NoSync = !o.fsmFsync
	scfg.CommitInterval = o.fsmCommitInterval
	if o.fsmCommitInterval <= 0 {
		scfg.CommitInterval = -1 // every batch
	}
	st, err := store.Open(scfg)
	if errors.Is(err, store.ErrUnclean) {
		// The machine went down with unsynced state-machine writes; the
		// Raft log and snapshots hold everything, so rebuild from them.
		log.Warn("rebuilding the state machine from the Raft log", "reason", err)
		if err := store.Remove(scfg.Path); err != nil {
			return err
		}
		st, err = store.Open(scfg)
	}
	if err != nil {
		return err
	}
	defer st.Close()

	// One HTTP client for all node-to-node HTTP: forwarding and joining.
	peerClient := httpapi.NewForwardClient()
	rcfg := raftnode.DefaultConfig()
	rcfg.ID = o.id
	rcfg.DataDir = o.dataDir
	rcfg.RaftAddr = o.raftAddr
	rcfg.RaftAdvertiseAddr = o.raftAdvertiseAddr
	rcfg.HTTPAdvertiseAddr = o.httpAdvertiseAddr
	rcfg.Bootstrap = o.bootstrap
	rcfg.InitialCluster = peers
	rcfg.Join = o.join
	rcfg.SnapshotThreshold = o.snapshotThreshold
	rcfg.SnapshotInterval = o.snapshotInterval
	rcfg.TrailingLogs = o.trailingLogs
	rcfg.MaxInflightProposals = o.maxInflight
	rcfg.HeartbeatTimeout = o.heartbeatTimeout
	rcfg.ElectionTimeout = o.electionTimeout
	rcfg.LeaderLeaseTimeout = min(rcfg.LeaderLeaseTimeout, o.heartbeatTimeout)
	rcfg.RaftLogLevel = o.raftLogLevel
	rcfg.HTTPClient = peerClient
	rcfg.Logger = log
	node, err := raftnode.New(rcfg, st)
	if err != nil {
		return err
	}

	hcfg := httpapi.DefaultConfig()
	hcfg.MaxValueSize = o.maxValueSize
	hcfg.RequestTimeout = o.requestTimeout
	hcfg.ForwardClient = peerClient
	hcfg.Logger = log
	api, err := httpapi.New(hcfg, node, st)
	if err != nil {
		node.Shutdown()
		return err
	}
	srv := &http.Server{Handler: api, BaseContext: api.BaseContext, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	httpapi.CloseNewConnsOnShutdown(srv)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if o.pprofAddr != "" {
		go func() {
			mux := http.NewServeMux()
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
			log.Info("pprof listening", "addr", o.pprofAddr)
			if err := http.ListenAndServe(o.pprofAddr, mux); err != nil {
				log.Error("pprof server failed", "err", err)
			}
		}()
	}
	log.Info("cairn node started", "http_addr", o.httpAddr, "raft_addr", o.raftAddr, "data_dir", o.dataDir)

	if ctx == nil {
		ctx = context.Background()
	}
	sig, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-sig.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		log.Error("http server failed", "err", err)
	case <-node.Removed():
		log.Warn("stopping: this node was removed from the cluster; wipe its data dir before it joins again")
	case <-st.Failed():
		// The state machine cannot go on (its file is corrupt); Raft's
		// apply loop is stuck on purpose, so a clean shutdown would hang.
		log.Error("stopping: the state machine failed", "err", st.FailErr())
		os.Exit(2)
	}
	// Hand leadership on first, then let in-flight requests finish (they
	// forward to the new leader), then stop Raft and close the store.
	node.TransferLeadership()
	api.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := node.Shutdown(); err != nil {
		return fmt.Errorf("raft shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
