package inproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/httpapi"
	"github.com/cairn-kv/cairn/internal/freeport"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
)

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago (see internal/freeport); Raft needs a fixed port to advertise before
// it listens.
func FreeAddr(t testing.TB) string {
	t.Helper()
	p, err := freeport.Port("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// WaitFor polls cond every 10ms until it returns nil, failing the test
// with cond's last error once timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
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

// Context returns a context that ends after d or at the end of the test.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Options shape a cluster.
type Options struct {
	// Heartbeat, Election and Lease are the Raft timeouts; zero means
	// 300ms, 300ms and 150ms.
	Heartbeat, Election, Lease time.Duration
	// TrailingLogs is kept after a snapshot; zero means the default.
	TrailingLogs uint64
	// Initial bootstraps every node at once with InitialCluster instead of
	// node 1 bootstrapping and the others joining.
	Initial bool
	// API configures every node's handler (Logger and ForwardClient are
	// filled in); zero fields take httpapi's defaults.
	API httpapi.Config
}

// Node is one in-process cairn node: a bbolt store, a Raft node and an
// HTTP server running httpapi, all on 127.0.0.1.
//
// The fields up to InitialCluster say how the node starts; a test may
// change them while the node is stopped (to move it to another address,
// say) and they take effect at its next start.
type Node struct {
	// ID is the node's Raft server ID, such as "n1".
	ID string
	// Dir is its data directory; it outlives a stop, for a restart.
	Dir string
	// RaftAddr is the address its Raft transport listens on and
	// advertises.
	RaftAddr string
	// HTTPAddr is the address its HTTP API listens on and advertises.
	HTTPAddr string
	// Join lists the HTTP addresses it asks to join through.
	Join []string
	// Bootstrap makes it bootstrap a one-member cluster.
	Bootstrap bool
	// InitialCluster, when set, is the membership it bootstraps with.
	InitialCluster []raftnode.Peer

	// Store is the running node's state machine. Store, Raft and API are
	// set by every start and stay (closed) after a stop.
	Store *store.Store
	// Raft is the running node's Raft side.
	Raft *raftnode.Node
	// API is the handler the running node's HTTP server runs.
	API *httpapi.Handler

	c     *Cluster
	srv   *http.Server
	conns connStates
	fwd   *http.Client
	up    bool
}

// Cluster is a set of Nodes in one process.
type Cluster struct {
	// Nodes holds every node ever added, running or not, in the order they
	// were added.
	Nodes []*Node
	// Log is the logger the nodes log to (with a "node" attribute).
	Log *slog.Logger

	t    testing.TB
	opts Options
	mu   sync.Mutex
}

// New returns a cluster with no nodes yet, whose nodes are all stopped at
// the end of the test. Add nodes with AddNode and start them with Start
// or MustStart.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Heartbeat == 0 {
		opts.Heartbeat, opts.Election, opts.Lease = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	}
	c := &Cluster{t: t, Log: Logger(t), opts: opts}
	// TempDir's own cleanup must run after the nodes stop: the stores
	// remove their markers on close. The first call registers it.
	t.TempDir()
	t.Cleanup(c.StopAll)
	return c
}

// Start starts n nodes and waits until every one is a voter with its
// HTTP address registered and all agree on one leader.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := New(t, opts)
	for i := 0; i < n; i++ {
		c.AddNode()
	}
	if opts.Initial {
		var peers []raftnode.Peer
		for _, tn := range c.Nodes {
			peers = append(peers, raftnode.Peer{ID: tn.ID, RaftAddr: tn.RaftAddr})
		}
		for _, tn := range c.Nodes {
			tn.InitialCluster = peers
			tn.Join = nil
			tn.Bootstrap = false
		}
	}
	for _, tn := range c.Nodes {
		c.MustStart(tn)
	}
	c.WaitMembers(t, c.Nodes...)
	return c
}

// AddNode adds a node that is not started yet: node 1 bootstraps, later
// nodes join through every earlier node's HTTP address.
func (c *Cluster) AddNode() *Node {
	c.t.Helper()
	i := len(c.Nodes) + 1
	tn := &Node{
		c:        c,
		ID:       fmt.Sprintf("n%d", i),
		Dir:      c.t.TempDir(),
		RaftAddr: FreeAddr(c.t),
		HTTPAddr: FreeAddr(c.t),
	}
	if i == 1 {
		tn.Bootstrap = true
	}
	for _, o := range c.Nodes {
		tn.Join = append(tn.Join, o.HTTPAddr)
	}
	c.Nodes = append(c.Nodes, tn)
	return tn
}

// Config is the Raft configuration tn starts with.
func (tn *Node) Config() raftnode.Config {
	o := tn.c.opts
	cfg := raftnode.DefaultConfig()
	cfg.ID = tn.ID
	cfg.DataDir = tn.Dir
	cfg.RaftAddr = tn.RaftAddr
	cfg.HTTPAdvertiseAddr = tn.HTTPAddr
	cfg.Bootstrap = tn.Bootstrap
	cfg.InitialCluster = tn.InitialCluster
	cfg.Join = tn.Join
	cfg.HeartbeatTimeout = o.Heartbeat
	cfg.ElectionTimeout = o.Election
	cfg.LeaderLeaseTimeout = o.Lease
	if o.TrailingLogs > 0 {
		cfg.TrailingLogs = o.TrailingLogs
	}
	cfg.RaftLogLevel = "info"
	cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	cfg.Logger = tn.c.Log.With("node", tn.ID)
	return cfg
}

// OpenStore opens tn's bbolt file (fsm.db in Dir).
func (tn *Node) OpenStore() (*store.Store, error) {
	scfg := store.DefaultConfig(filepath.Join(tn.Dir, "fsm.db"))
	scfg.NoSync = true
	scfg.Logger = tn.c.Log.With("node", tn.ID)
	return store.Open(scfg)
}

// Start opens tn's store, starts its Raft node and serves its HTTP API,
// the way cmd/cairn wires them.
func (c *Cluster) Start(tn *Node) error {
	var ln net.Listener
	var err error
	// The port was free when picked (or when tn last stopped); retry
	// briefly in case a closing connection still holds it.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", tn.HTTPAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", tn.HTTPAddr, err)
	}
	st, err := tn.OpenStore()
	if err != nil {
		ln.Close()
		return err
	}
	node, err := raftnode.New(tn.Config(), st)
	if err != nil {
		ln.Close()
		st.Close()
		return err
	}
	hcfg := c.opts.API
	hcfg.Logger = c.Log.With("node", tn.ID)
	hcfg.ForwardClient = httpapi.NewForwardClient()
	api, err := httpapi.New(hcfg, node, st)
	if err != nil {
		node.Shutdown()
		ln.Close()
		st.Close()
		return err
	}
	srv := &http.Server{Handler: api, BaseContext: api.BaseContext, ReadHeaderTimeout: 5 * time.Second, ConnState: tn.conns.track}
	httpapi.CloseNewConnsOnShutdown(srv)
	go srv.Serve(ln)
	c.mu.Lock()
	tn.Store, tn.Raft, tn.API, tn.srv, tn.fwd, tn.up = st, node, api, srv, hcfg.ForwardClient, true
	c.mu.Unlock()
	return nil
}

// MustStart is Start, failing the test on an error.
func (c *Cluster) MustStart(tn *Node) {
	c.t.Helper()
	if err := c.Start(tn); err != nil {
		c.t.Fatalf("start %s: %v", tn.ID, err)
	}
}

// connStates records the state of each HTTP connection of a node, to show
// which ones a shutdown waits for.
type connStates struct {
	mu sync.Mutex
	m  map[net.Conn]connState
}

type connState struct {
	state http.ConnState
	since time.Time
}

func (cs *connStates) track(c net.Conn, st http.ConnState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[net.Conn]connState{}
	}
	if st == http.StateClosed || st == http.StateHijacked {
		delete(cs.m, c)
		return
	}
	cs.m[c] = connState{st, time.Now()}
}

// String lists the connections not yet closed or hijacked.
func (cs *connStates) String() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var b strings.Builder
	for c, st := range cs.m {
		fmt.Fprintf(&b, "[%s %s for %v] ", c.RemoteAddr(), st.state, time.Since(st.since).Round(time.Millisecond))
	}
	return b.String()
}

// Stop shuts tn down: leadership, HTTP, Raft, then the store. Its data
// directory stays for a restart. Stopping a stopped node does nothing.
func (c *Cluster) Stop(tn *Node) {
	c.mu.Lock()
	up := tn.up
	tn.up = false
	c.mu.Unlock()
	if !up {
		return
	}
	// As cmd/cairn does: hand leadership on, end watches, let in-flight
	// requests finish, then stop Raft.
	tn.Raft.TransferLeadership()
	tn.API.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Should the shutdown time out, show what the connections still open
	// were doing, and the goroutines, a second before it gave up.
	snapped := make(chan string, 1)
	snap := time.AfterFunc(4*time.Second, func() {
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		snapped <- tn.conns.String() + "\ngoroutines:\n" + stacks.String()
	})
	err := tn.srv.Shutdown(ctx)
	var stalled string
	if !snap.Stop() {
		stalled = <-snapped
	}
	if err != nil {
		c.t.Errorf("http shutdown of %s: %v; at 4s, connections %s", tn.ID, err, stalled)
	}
	if err := tn.Raft.Shutdown(); err != nil {
		c.t.Errorf("shutdown %s: %v", tn.ID, err)
	}
	tn.fwd.CloseIdleConnections()
	if err := tn.Store.Close(); err != nil {
		c.t.Errorf("close store of %s: %v", tn.ID, err)
	}
}

// StopAll stops every running node at once.
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for _, tn := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Stop(tn)
		}()
	}
	wg.Wait()
}

// Running lists the nodes that are up.
func (c *Cluster) Running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, tn := range c.Nodes {
		if tn.up {
			out = append(out, tn)
		}
	}
	return out
}

// LeaderAmong waits until exactly one of nodes is leader and every one of
// them names it, and returns it.
func (c *Cluster) LeaderAmong(t testing.TB, timeout time.Duration, nodes ...*Node) *Node {
	t.Helper()
	var leader *Node
	WaitFor(t, timeout, "one leader", func() error {
		leader = nil
		for _, tn := range nodes {
			if tn.Raft.IsLeader() {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.ID, tn.ID)
				}
				leader = tn
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, tn := range nodes {
			if id, _ := tn.Raft.Leader(); id != leader.ID {
				return fmt.Errorf("%s thinks the leader is %q, not %s", tn.ID, id, leader.ID)
			}
		}
		return nil
	})
	return leader
}

// Leader waits for the running nodes to agree on a leader.
func (c *Cluster) Leader(t testing.TB) *Node {
	t.Helper()
	return c.LeaderAmong(t, 10*time.Second, c.Running()...)
}

// Followers lists the running nodes other than leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var out []*Node
	for _, tn := range c.Running() {
		if tn != leader {
			out = append(out, tn)
		}
	}
	return out
}

// WaitMembers waits until each of nodes lists exactly nodes as voting
// members, with their current Raft and HTTP addresses and one leader.
func (c *Cluster) WaitMembers(t testing.TB, nodes ...*Node) {
	t.Helper()
	want := map[string]*Node{}
	for _, tn := range nodes {
		want[tn.ID] = tn
	}
	WaitFor(t, 15*time.Second, "member lists to converge", func() error {
		for _, tn := range nodes {
			ms, err := tn.Raft.Members()
			if err != nil {
				return fmt.Errorf("%s: Members: %v", tn.ID, err)
			}
			if len(ms) != len(nodes) {
				return fmt.Errorf("%s lists %d members, want %d: %+v", tn.ID, len(ms), len(nodes), ms)
			}
			leaders := 0
			for _, m := range ms {
				w := want[m.ID]
				switch {
				case w == nil:
					return fmt.Errorf("%s lists unexpected member %+v", tn.ID, m)
				case !m.Voter:
					return fmt.Errorf("%s lists %s as a non-voter", tn.ID, m.ID)
				case m.RaftAddr != w.RaftAddr:
					return fmt.Errorf("%s lists %s at raft %s, want %s", tn.ID, m.ID, m.RaftAddr, w.RaftAddr)
				case m.HTTPAddr != w.HTTPAddr:
					return fmt.Errorf("%s lists %s at http %q, want %s", tn.ID, m.ID, m.HTTPAddr, w.HTTPAddr)
				}
				if m.Leader {
					leaders++
				}
			}
			if leaders != 1 {
				return fmt.Errorf("%s marks %d leaders: %+v", tn.ID, leaders, ms)
			}
		}
		return nil
	})
}

// Put writes key=value through whichever node leads, retrying while
// leadership moves, and returns the revision.
func (c *Cluster) Put(t testing.TB, key, value string) int64 {
	t.Helper()
	var rev int64
	WaitFor(t, 10*time.Second, "put "+key, func() error {
		l := c.Leader(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := l.Raft.Apply(ctx, store.NewPut(key, []byte(value), -1, 0))
		if err != nil {
			return err
		}
		rev = res.Revision
		return nil
	})
	return rev
}

// WaitRevision waits until every one of nodes has applied revision rev.
func WaitRevision(t testing.TB, rev int64, nodes ...*Node) {
	t.Helper()
	for _, tn := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tn.Store.WaitRevision(ctx, rev)
		cancel()
		if err != nil {
			t.Fatalf("%s did not reach revision %d (at %d): %v", tn.ID, rev, tn.Store.Revision(), err)
		}
	}
}
