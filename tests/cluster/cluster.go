package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/freeport"
)

// Defaults of the waits; see the With options.
const (
	DefaultWaitTimeout  = 20 * time.Second
	DefaultStartTimeout = 30 * time.Second
	DefaultStopTimeout  = 20 * time.Second
	pollInterval        = 25 * time.Millisecond
	logTailLines        = 100
)

// EnvLogs, when set to any value, makes every Cluster write the tail of
// every node's log with t.Log at cleanup, not only when the test failed.
const EnvLogs = "CAIRN_TEST_LOGS"

// Option changes how Start sets a cluster up.
type Option func(*config)

type config struct {
	flags          []string
	initialCluster bool
	logLevel       string
	waitTimeout    time.Duration
	startTimeout   time.Duration
	stopTimeout    time.Duration
}

// WithFlags adds server flags to every node, such as
// WithFlags("--snapshot-threshold", "1000").
func WithFlags(flags ...string) Option {
	return func(c *config) { c.flags = append(c.flags, flags...) }
}

// WithInitialCluster starts every node with the same --initial-cluster
// list instead of --bootstrap on node 1 and --join on the others.
func WithInitialCluster() Option { return func(c *config) { c.initialCluster = true } }

// WithLogLevel sets --log-level of every node (default: the server's).
func WithLogLevel(level string) Option { return func(c *config) { c.logLevel = level } }

// WithWaitTimeout bounds Leader, WaitForNewLeader, WaitConverged and the
// other waits (default DefaultWaitTimeout).
func WithWaitTimeout(d time.Duration) Option { return func(c *config) { c.waitTimeout = d } }

// WithStartTimeout bounds how long a started process may take to answer
// /healthz (default DefaultStartTimeout).
func WithStartTimeout(d time.Duration) Option { return func(c *config) { c.startTimeout = d } }

// WithStopTimeout bounds how long Stop waits after SIGTERM (default
// DefaultStopTimeout).
func WithStopTimeout(d time.Duration) Option { return func(c *config) { c.stopTimeout = d } }

// Cluster is a set of cairn server processes started by Start. Its
// methods are safe for concurrent use; those taking a testing.TB must run
// on that test's goroutine.
type Cluster struct {
	t      testing.TB
	bin    string
	dir    string
	cfg    config
	client *http.Client

	mu     sync.Mutex
	nodes  []*Node
	nextID int
	closed bool
}

// Start starts n nodes and waits until they agree on a leader, the leader
// lists all of them as members with their addresses, and every node knows
// the leader's HTTP address. Everything is torn down in
// t.Cleanup.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("cluster: Start with %d nodes", n)
	}
	cfg := config{
		waitTimeout:  DefaultWaitTimeout,
		startTimeout: DefaultStartTimeout,
		stopTimeout:  DefaultStopTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	bin := Binary(t)
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), cfg: cfg, client: newHTTPClient()}
	// Registered after TempDir, so it runs first: processes die before
	// their directories go.
	t.Cleanup(c.cleanup)

	for attempt := 1; ; attempt++ {
		err := c.startNodes(n)
		if err == nil {
			break
		}
		if errors.Is(err, ErrAddrInUse) && attempt < 3 {
			t.Logf("cluster: %v; retrying with other ports", err)
			c.discardAll()
			continue
		}
		t.Fatalf("cluster: start %d nodes: %v", n, err)
	}
	ids := make([]string, 0, n)
	for _, nd := range c.Nodes() {
		ids = append(ids, nd.ID)
	}
	c.waitMembers(t, ids...)
	return c
}

// FreePort finds a free TCP port on ip (such as "127.0.0.1"), below the
// ephemeral range and handed out once per test binary (internal/freeport).
func FreePort(ip string) (int, error) { return freeport.Port(ip) }

// newNode makes (but does not start) node id with fresh ports. mode is the
// cluster-forming flags (--bootstrap, --join ..., --initial-cluster ...),
// filled in by the caller through setMode.
func (c *Cluster) newNode(id string) (*Node, error) {
	hp, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	rp, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir, id)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	n := &Node{
		Process:  &Process{ID: id, Bin: c.bin, Dir: dir, LogPath: filepath.Join(dir, "cairn.log")},
		HTTPAddr: "127.0.0.1:" + strconv.Itoa(hp),
		RaftAddr: "127.0.0.1:" + strconv.Itoa(rp),
		DataDir:  filepath.Join(dir, "data"),
	}
	n.http = &HTTP{Base: n.URL(), Client: c.client}
	return n, nil
}

func (c *Cluster) baseArgs(n *Node) []string {
	args := []string{"server",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
	}
	if c.cfg.logLevel != "" {
		args = append(args, "--log-level", c.cfg.logLevel)
	}
	return args
}

func (c *Cluster) startNodes(count int) error {
	var nodes []*Node
	for i := 1; i <= count; i++ {
		n, err := c.newNode("n" + strconv.Itoa(i))
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("cluster closed")
	}
	c.nodes = nodes
	c.nextID = count + 1
	c.mu.Unlock()

	if c.cfg.initialCluster {
		var members []string
		for _, n := range nodes {
			members = append(members, n.ID+"="+n.RaftAddr)
		}
		for _, n := range nodes {
			n.args = append(c.baseArgs(n), "--initial-cluster", strings.Join(members, ","))
			n.args = append(n.args, c.cfg.flags...)
			if err := n.start(); err != nil {
				return err
			}
		}
		return c.waitAllUp(nodes)
	}

	first := nodes[0]
	first.args = append(c.baseArgs(first), "--bootstrap")
	first.args = append(first.args, c.cfg.flags...)
	if err := first.start(); err != nil {
		return err
	}
	if err := c.waitUp(first); err != nil {
		return err
	}
	// Let the first node win its one-member election, so the others join
	// a cluster that has a leader.
	if err := c.waitState(first, "Leader"); err != nil {
		return err
	}
	for _, n := range nodes[1:] {
		n.args = append(c.baseArgs(n), "--join", first.HTTPAddr)
		n.args = append(n.args, c.cfg.flags...)
		if err := n.start(); err != nil {
			return err
		}
	}
	return c.waitAllUp(nodes[1:])
}

// discardAll kills every node and forgets them (a failed start attempt).
func (c *Cluster) discardAll() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = nil
	c.mu.Unlock()
	for _, n := range nodes {
		n.Kill(10 * time.Second)
		os.RemoveAll(n.Dir)
	}
}

func (c *Cluster) waitAllUp(nodes []*Node) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.waitUp(n) })
	}
	wg.Wait()
	for _, err := range errs {
		if errors.Is(err, ErrAddrInUse) {
			return err
		}
	}
	return errors.Join(errs...)
}

// waitUp waits until n answers /healthz; see Process.WaitUp.
func (c *Cluster) waitUp(n *Node) error { return n.WaitUp(n.http, c.cfg.startTimeout) }

// waitState polls the node's status until its state is state.
func (c *Cluster) waitState(n *Node, state string) error {
	var last string
	ok := Poll(c.cfg.waitTimeout, pollInterval, func() bool {
		s, err := c.status(n)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%+v", s)
		return s.State == state
	})
	if !ok {
		return fmt.Errorf("node %s: not %s within %v (last status: %s)", n.ID, state, c.cfg.waitTimeout, last)
	}
	return nil
}

// Poll calls cond every interval until it returns true, and reports
// false if timeout passes first.
func Poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

func (c *Cluster) status(n *Node) (Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return n.http.Status(ctx)
}

// cleanup kills every process, and writes the log tails when the test
// failed (or EnvLogs is set).
func (c *Cluster) cleanup() {
	c.mu.Lock()
	c.closed = true
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	if err := KillAll(nodes); err != nil {
		c.t.Errorf("cluster cleanup: %v", err)
	}
	c.client.CloseIdleConnections()
	if c.t.Failed() || os.Getenv(EnvLogs) != "" {
		for _, n := range nodes {
			c.t.Logf("----- log of %s (http %s, raft %s), last %d lines -----\n%s",
				n.ID, n.HTTPAddr, n.RaftAddr, logTailLines, n.LogTail(logTailLines))
		}
	}
}

// Nodes returns every node ever started in the cluster, running or not,
// in start order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Live returns the nodes whose process runs and is not paused.
func (c *Cluster) Live() []*Node {
	return slices.DeleteFunc(c.Nodes(), func(n *Node) bool { return !n.Live() })
}

// URL returns http://host:port of node id, or "" if there is no such node.
func (c *Cluster) URL(id string) string {
	if n := c.Node(id); n != nil {
		return n.URL()
	}
	return ""
}

// HTTPAddr returns the HTTP address of node id, or "".
func (c *Cluster) HTTPAddr(id string) string {
	if n := c.Node(id); n != nil {
		return n.HTTPAddr
	}
	return ""
}

// HTTP returns the HTTP helper of node id, or nil.
func (c *Cluster) HTTP(id string) *HTTP {
	if n := c.Node(id); n != nil {
		return n.HTTP()
	}
	return nil
}

func (c *Cluster) mustNode(id string) (*Node, error) {
	n := c.Node(id)
	if n == nil {
		return nil, fmt.Errorf("cluster: no node %q", id)
	}
	return n, nil
}

// Kill sends SIGKILL to node id and waits until the process is gone.
func (c *Cluster) Kill(id string) error {
	n, err := c.mustNode(id)
	if err != nil {
		return err
	}
	return n.Kill(10 * time.Second)
}

// Stop sends SIGTERM to node id and waits for it to exit. It is an error
// if the node takes longer than the stop timeout (it is then killed) or
// exits with a status other than 0.
func (c *Cluster) Stop(id string) error {
	n, err := c.mustNode(id)
	if err != nil {
		return err
	}
	return n.Stop(c.cfg.stopTimeout)
}

// Pause sends SIGSTOP to node id: it keeps its sockets but answers
// nothing until Resume.
func (c *Cluster) Pause(id string) error {
	n, err := c.mustNode(id)
	if err != nil {
		return err
	}
	_, err = n.Signal(syscall.SIGSTOP)
	return err
}

// Resume sends SIGCONT to node id.
func (c *Cluster) Resume(id string) error {
	n, err := c.mustNode(id)
	if err != nil {
		return err
	}
	_, err = n.Signal(syscall.SIGCONT)
	return err
}

// Restart starts node id again, with the same flags, ports and data dir,
// and waits until it answers /healthz. The node must not be running.
// (--bootstrap is kept: it is a no-op on a data dir that has state.)
func (c *Cluster) Restart(id string) error {
	n, err := c.mustNode(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("cluster: closed")
	}
	err = n.start()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitUp(n)
}

// currentLeader asks every live node for its status; ok is true when they
// all answer, all name the same leader, and that leader is live and says
// it is the leader.
func (c *Cluster) currentLeader() (leader *Node, ok bool, desc string) {
	var ids []string
	for _, n := range c.Live() {
		ids = append(ids, n.ID)
	}
	id, ok, desc := AgreedLeader(ids, func(id string) (Status, error) { return c.status(c.Node(id)) }, false)
	if !ok {
		return nil, false, desc
	}
	return c.Node(id), true, desc
}

// AgreedLeader asks each of the nodes ids for its status and reports the
// leader they name: ok is true when every one answers, all name the same
// leader, and that leader is one of them and says it is the leader; with
// needHTTP every one must also know the leader's HTTP address. desc
// describes the answers, for a test's failure message.
func AgreedLeader(ids []string, status func(id string) (Status, error), needHTTP bool) (leaderID string, ok bool, desc string) {
	if len(ids) == 0 {
		return "", false, "no live node"
	}
	var parts []string
	agree := true
	statuses := map[string]Status{}
	for _, id := range ids {
		s, err := status(id)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", id, err))
			agree = false
			continue
		}
		statuses[id] = s
		parts = append(parts, fmt.Sprintf("%s: state=%s leader=%q term=%d applied=%d", id, s.State, s.Leader.ID, s.Term, s.AppliedIndex))
		if s.Leader.ID == "" || (leaderID != "" && s.Leader.ID != leaderID) || (needHTTP && s.Leader.HTTPAddr == "") {
			agree = false
		}
		if leaderID == "" {
			leaderID = s.Leader.ID
		}
	}
	desc = strings.Join(parts, "; ")
	ls, found := statuses[leaderID]
	if !agree || !found || ls.State != "Leader" || ls.ID != leaderID {
		return "", false, desc
	}
	return leaderID, true, desc
}

func (c *Cluster) waitLeader(t testing.TB, accept func(*Node) bool, what string) *Node {
	t.Helper()
	var leader *Node
	var desc string
	ok := Poll(c.cfg.waitTimeout, pollInterval, func() bool {
		var ok bool
		leader, ok, desc = c.currentLeader()
		return ok && accept(leader)
	})
	if !ok {
		t.Fatalf("cluster: no %s within %v; last statuses: %s", what, c.cfg.waitTimeout, desc)
	}
	return leader
}

// Leader polls the status of every live node until they agree on a
// leader, and returns it. It fails t after the wait timeout.
func (c *Cluster) Leader(t testing.TB) *Node {
	t.Helper()
	return c.waitLeader(t, func(*Node) bool { return true }, "agreed leader")
}

// WaitForNewLeader waits until the live nodes agree on a leader other
// than old, and returns it.
func (c *Cluster) WaitForNewLeader(t testing.TB, old string) *Node {
	t.Helper()
	return c.waitLeader(t, func(n *Node) bool { return n.ID != old }, "leader other than "+old)
}

// Followers returns the live nodes other than the leader.
func (c *Cluster) Followers(t testing.TB) []*Node {
	t.Helper()
	leader := c.Leader(t)
	return slices.DeleteFunc(c.Live(), func(n *Node) bool { return n == leader })
}

// AddNode starts a new node that joins the cluster through every live
// node's HTTP address, with extra server flags, and waits until the
// leader lists it as a member with its addresses and every node knows
// the leader.
func (c *Cluster) AddNode(t testing.TB, extraFlags ...string) *Node {
	t.Helper()
	var joins []string
	for _, n := range c.Live() {
		joins = append(joins, n.HTTPAddr)
	}
	if len(joins) == 0 {
		t.Fatalf("cluster: AddNode with no live node")
	}
	var n *Node
	for attempt := 1; ; attempt++ {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			t.Fatalf("cluster: closed")
		}
		id := "n" + strconv.Itoa(c.nextID)
		c.mu.Unlock()
		var err error
		n, err = c.newNode(id)
		if err != nil {
			t.Fatalf("cluster: AddNode: %v", err)
		}
		n.args = append(c.baseArgs(n), "--join", strings.Join(joins, ","))
		n.args = append(n.args, c.cfg.flags...)
		n.args = append(n.args, extraFlags...)
		c.mu.Lock()
		c.nextID++
		c.nodes = append(c.nodes, n)
		err = n.start()
		c.mu.Unlock()
		if err == nil {
			err = c.waitUp(n)
		}
		if err == nil {
			break
		}
		if errors.Is(err, ErrAddrInUse) && attempt < 3 {
			t.Logf("cluster: %v; retrying with other ports", err)
			n.Kill(10 * time.Second)
			c.mu.Lock()
			c.nodes = slices.DeleteFunc(c.nodes, func(x *Node) bool { return x == n })
			c.mu.Unlock()
			continue
		}
		t.Fatalf("cluster: AddNode: %v", err)
	}
	c.waitMembers(t, n.ID)
	return n
}

// waitMembers waits until the leader lists every id as a member with its
// HTTP and Raft addresses, and every live node names the leader and its
// HTTP address.
func (c *Cluster) waitMembers(t testing.TB, ids ...string) {
	t.Helper()
	var desc string
	ok := Poll(c.cfg.waitTimeout, pollInterval, func() bool {
		leader, ok, d := c.currentLeader()
		if !ok {
			desc = d
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ms, err := leader.http.Members(ctx)
		cancel()
		if err != nil {
			desc = "members: " + err.Error()
			return false
		}
		have := map[string]Member{}
		for _, m := range ms {
			have[m.ID] = m
		}
		for _, id := range ids {
			n := c.Node(id)
			if m, ok := have[id]; !ok || m.HTTPAddr != n.HTTPAddr || m.RaftAddr != n.RaftAddr {
				desc = fmt.Sprintf("leader %s lists %+v, want %v with their addresses", leader.ID, ms, ids)
				return false
			}
		}
		// Every node knows where the leader's HTTP API is, so it can
		// forward.
		for _, n := range c.Live() {
			s, err := c.status(n)
			if err != nil || s.Leader.HTTPAddr != leader.HTTPAddr {
				desc = fmt.Sprintf("%s: status %+v (%v), want leader http_addr %s", n.ID, s, err, leader.HTTPAddr)
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("cluster: members %v not all registered within %v; last: %s", ids, c.cfg.waitTimeout, desc)
	}
}

// Statuses returns the status of every live node, failing t if one does
// not answer.
func (c *Cluster) Statuses(t testing.TB) map[string]Status {
	t.Helper()
	out := map[string]Status{}
	for _, n := range c.Live() {
		s, err := c.status(n)
		if err != nil {
			t.Fatalf("cluster: status of %s: %v", n.ID, err)
		}
		out[n.ID] = s
	}
	return out
}

// WaitConverged waits until every live node reports the same
// applied_index and revision, and returns that applied index.
func (c *Cluster) WaitConverged(t testing.TB) uint64 {
	t.Helper()
	var desc string
	var applied uint64
	ok := Poll(c.cfg.waitTimeout, pollInterval, func() bool {
		var parts []string
		same := true
		first := true
		var rev int64
		for _, n := range c.Live() {
			s, err := c.status(n)
			if err != nil {
				parts = append(parts, fmt.Sprintf("%s: %v", n.ID, err))
				same = false
				continue
			}
			parts = append(parts, fmt.Sprintf("%s: applied=%d revision=%d", n.ID, s.AppliedIndex, s.Revision))
			if first {
				applied, rev, first = s.AppliedIndex, s.Revision, false
			} else if s.AppliedIndex != applied || s.Revision != rev {
				same = false
			}
		}
		desc = strings.Join(parts, "; ")
		return same && !first
	})
	if !ok {
		t.Fatalf("cluster: nodes not converged within %v: %s", c.cfg.waitTimeout, desc)
	}
	return applied
}

// WaitApplied waits until node id reports an applied_index of at least
// index, and returns its status.
func (c *Cluster) WaitApplied(t testing.TB, id string, index uint64) Status {
	t.Helper()
	n, err := c.mustNode(id)
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	var last string
	ok := Poll(c.cfg.waitTimeout, pollInterval, func() bool {
		var err error
		s, err = c.status(n)
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("applied=%d", s.AppliedIndex)
		return s.AppliedIndex >= index
	})
	if !ok {
		t.Fatalf("cluster: %s did not apply index %d within %v (last: %s)", id, index, c.cfg.waitTimeout, last)
	}
	return s
}
