package raftnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/httpapi"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
)

// logWriter sends log lines to t.Log until the test's cleanup marks it
// done; later lines (from goroutines that outlive the test) are dropped
// instead of panicking.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// testLogger returns a logger writing to t.Log. Call it before anything
// whose cleanup may log, so that its own cleanup runs last.
func testLogger(t testing.TB) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago; Raft needs a fixed port to advertise before it listens.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitFor polls cond every 10ms until it returns nil, failing the test
// with cond's last error once timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

// clusterOptions shape a test cluster.
type clusterOptions struct {
	// Heartbeat, Election and Lease are the Raft timeouts; zero means
	// 300ms, 300ms and 150ms.
	Heartbeat, Election, Lease time.Duration
	// TrailingLogs is kept after a snapshot; zero means the default.
	TrailingLogs uint64
	// Initial bootstraps every node at once with InitialCluster instead of
	// node 1 bootstrapping and the others joining.
	Initial bool
}

// testNode is one in-process cairn node: a bbolt store, a Raft node and
// an HTTP server running httpapi, all on 127.0.0.1.
type testNode struct {
	c        *testCluster
	id       string
	dir      string
	raftAddr string
	httpAddr string
	join     []string
	boot     bool
	initial  []raftnode.Peer

	st   *store.Store
	node *raftnode.Node
	api  *httpapi.Handler
	srv  *http.Server
	fwd  *http.Client
	up   bool
}

// testCluster is a set of testNodes in one process.
type testCluster struct {
	t     testing.TB
	log   *slog.Logger
	opts  clusterOptions
	nodes []*testNode
	mu    sync.Mutex
}

// mustNewCluster starts n nodes and waits until every one is a voter with
// its HTTP address registered and all agree on one leader.
func mustNewCluster(t testing.TB, n int, opts clusterOptions) *testCluster {
	t.Helper()
	if opts.Heartbeat == 0 {
		opts.Heartbeat, opts.Election, opts.Lease = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	}
	c := &testCluster{t: t, log: testLogger(t), opts: opts}
	// TempDir's own cleanup must run after the nodes stop: the stores
	// remove their markers on close. The first call registers it.
	t.TempDir()
	t.Cleanup(c.stopAll)
	for i := 0; i < n; i++ {
		c.newNode()
	}
	if opts.Initial {
		var peers []raftnode.Peer
		for _, tn := range c.nodes {
			peers = append(peers, raftnode.Peer{ID: tn.id, RaftAddr: tn.raftAddr})
		}
		for _, tn := range c.nodes {
			tn.initial = peers
			tn.join = nil
			tn.boot = false
		}
	}
	for _, tn := range c.nodes {
		c.mustStart(tn)
	}
	c.waitMembers(t, c.nodes...)
	return c
}

// newNode adds a node that is not started yet: node 1 bootstraps, later
// nodes join through every earlier node's HTTP address.
func (c *testCluster) newNode() *testNode {
	c.t.Helper()
	i := len(c.nodes) + 1
	tn := &testNode{
		c:        c,
		id:       fmt.Sprintf("n%d", i),
		dir:      c.t.TempDir(),
		raftAddr: freeAddr(c.t),
		httpAddr: freeAddr(c.t),
	}
	if i == 1 {
		tn.boot = true
	}
	for _, o := range c.nodes {
		tn.join = append(tn.join, o.httpAddr)
	}
	c.nodes = append(c.nodes, tn)
	return tn
}

// config is the Raft configuration tn starts with.
func (tn *testNode) config() raftnode.Config {
	o := tn.c.opts
	cfg := raftnode.DefaultConfig()
	cfg.ID = tn.id
	cfg.DataDir = tn.dir
	cfg.RaftAddr = tn.raftAddr
	cfg.HTTPAdvertiseAddr = tn.httpAddr
	cfg.Bootstrap = tn.boot
	cfg.InitialCluster = tn.initial
	cfg.Join = tn.join
	cfg.HeartbeatTimeout = o.Heartbeat
	cfg.ElectionTimeout = o.Election
	cfg.LeaderLeaseTimeout = o.Lease
	if o.TrailingLogs > 0 {
		cfg.TrailingLogs = o.TrailingLogs
	}
	cfg.RaftLogLevel = "info"
	cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	cfg.Logger = tn.c.log.With("node", tn.id)
	return cfg
}

// openStore opens tn's bbolt file.
func (tn *testNode) openStore() (*store.Store, error) {
	scfg := store.DefaultConfig(filepath.Join(tn.dir, "fsm.db"))
	scfg.NoSync = true
	scfg.Logger = tn.c.log.With("node", tn.id)
	return store.Open(scfg)
}

// start opens tn's store, starts its Raft node and serves its HTTP API,
// the way cmd/cairn wires them.
func (c *testCluster) start(tn *testNode) error {
	var ln net.Listener
	var err error
	// The port was free when picked (or when tn last stopped); retry
	// briefly in case a closing connection still holds it.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", tn.httpAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", tn.httpAddr, err)
	}
	st, err := tn.openStore()
	if err != nil {
		ln.Close()
		return err
	}
	node, err := raftnode.New(tn.config(), st)
	if err != nil {
		ln.Close()
		st.Close()
		return err
	}
	hcfg := httpapi.DefaultConfig()
	hcfg.Logger = c.log.With("node", tn.id)
	hcfg.ForwardClient = httpapi.NewForwardClient()
	api, err := httpapi.New(hcfg, node, st)
	if err != nil {
		node.Shutdown()
		ln.Close()
		st.Close()
		return err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	c.mu.Lock()
	tn.st, tn.node, tn.api, tn.srv, tn.fwd, tn.up = st, node, api, srv, hcfg.ForwardClient, true
	c.mu.Unlock()
	return nil
}

func (c *testCluster) mustStart(tn *testNode) {
	c.t.Helper()
	if err := c.start(tn); err != nil {
		c.t.Fatalf("start %s: %v", tn.id, err)
	}
}

// stop shuts tn down: leadership, HTTP, Raft, then the store. Its data directory stays for a restart.
func (c *testCluster) stop(tn *testNode) {
	c.mu.Lock()
	up := tn.up
	tn.up = false
	c.mu.Unlock()
	if !up {
		return
	}
	// As cmd/cairn does: hand leadership on, end watches, let in-flight
	// requests finish, then stop Raft.
	tn.node.TransferLeadership()
	tn.api.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tn.srv.Shutdown(ctx); err != nil {
		c.t.Errorf("http shutdown of %s: %v", tn.id, err)
	}
	if err := tn.node.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", tn.id, err)
	}
	tn.fwd.CloseIdleConnections()
	if err := tn.st.Close(); err != nil {
		c.t.Errorf("close store of %s: %v", tn.id, err)
	}
}

// stopAll stops every running node at once.
func (c *testCluster) stopAll() {
	var wg sync.WaitGroup
	for _, tn := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.stop(tn)
		}()
	}
	wg.Wait()
}

// running lists the nodes that are up.
func (c *testCluster) running() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for _, tn := range c.nodes {
		if tn.up {
			out = append(out, tn)
		}
	}
	return out
}

// leaderAmong waits until exactly one of nodes is leader and every one of
// them names it, and returns it.
func (c *testCluster) leaderAmong(t testing.TB, timeout time.Duration, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, timeout, "one leader", func() error {
		leader = nil
		for _, tn := range nodes {
			if tn.node.IsLeader() {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.id, tn.id)
				}
				leader = tn
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, tn := range nodes {
			if id, _ := tn.node.Leader(); id != leader.id {
				return fmt.Errorf("%s thinks the leader is %q, not %s", tn.id, id, leader.id)
			}
		}
		return nil
	})
	return leader
}

// leader waits for the running nodes to agree on a leader.
func (c *testCluster) leader(t testing.TB) *testNode {
	t.Helper()
	return c.leaderAmong(t, 10*time.Second, c.running()...)
}

// followers lists the running nodes other than leader.
func (c *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, tn := range c.running() {
		if tn != leader {
			out = append(out, tn)
		}
	}
	return out
}

// waitMembers waits until each of nodes lists exactly nodes as voting
// members, with their current Raft and HTTP addresses and one leader.
func (c *testCluster) waitMembers(t testing.TB, nodes ...*testNode) {
	t.Helper()
	want := map[string]*testNode{}
	for _, tn := range nodes {
		want[tn.id] = tn
	}
	waitFor(t, 15*time.Second, "member lists to converge", func() error {
		for _, tn := range nodes {
			ms, err := tn.node.Members()
			if err != nil {
				return fmt.Errorf("%s: Members: %v", tn.id, err)
			}
			if len(ms) != len(nodes) {
				return fmt.Errorf("%s lists %d members, want %d: %+v", tn.id, len(ms), len(nodes), ms)
			}
			leaders := 0
			for _, m := range ms {
				w := want[m.ID]
				switch {
				case w == nil:
					return fmt.Errorf("%s lists unexpected member %+v", tn.id, m)
				case !m.Voter:
					return fmt.Errorf("%s lists %s as a non-voter", tn.id, m.ID)
				case m.RaftAddr != w.raftAddr:
					return fmt.Errorf("%s lists %s at raft %s, want %s", tn.id, m.ID, m.RaftAddr, w.raftAddr)
				case m.HTTPAddr != w.httpAddr:
					return fmt.Errorf("%s lists %s at http %q, want %s", tn.id, m.ID, m.HTTPAddr, w.httpAddr)
				}
				if m.Leader {
					leaders++
				}
			}
			if leaders != 1 {
				return fmt.Errorf("%s marks %d leaders: %+v", tn.id, leaders, ms)
			}
		}
		return nil
	})
}

// put writes key=value through whichever node leads, retrying while
// leadership moves, and returns the revision.
func (c *testCluster) put(t testing.TB, key, value string) int64 {
	t.Helper()
	var rev int64
	waitFor(t, 10*time.Second, "put "+key, func() error {
		l := c.leader(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := l.node.Apply(ctx, store.NewPut(key, []byte(value), -1, 0))
		if err != nil {
			return err
		}
		rev = res.Revision
		return nil
	})
	return rev
}

// waitRevision waits until every one of nodes has applied revision rev.
func waitRevision(t testing.TB, rev int64, nodes ...*testNode) {
	t.Helper()
	for _, tn := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tn.st.WaitRevision(ctx, rev)
		cancel()
		if err != nil {
			t.Fatalf("%s did not reach revision %d (at %d): %v", tn.id, rev, tn.st.Revision(), err)
		}
	}
}

// ctxT returns a context that ends after d or at the end of the test.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
