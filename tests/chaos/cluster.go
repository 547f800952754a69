//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/cluster"
)

// Options configures a Cluster.
type Options struct {
	// Nodes is how many nodes to start. Zero means 3.
	Nodes int
	// Flags are extra server flags for every node, such as
	// "--snapshot-threshold", "64".
	Flags []string
	// LogLevel is every node's --log-level. Empty means "info".
	LogLevel string
	// WaitTimeout bounds each wait (leader, convergence, start). Zero
	// means 30s.
	WaitTimeout time.Duration
	// BeforeStart, when set, runs before a node's first start, with its
	// data directory created (to mount a filesystem on it, say).
	BeforeStart func(n *Node) error
}

// Cluster is a set of cairn server processes whose Raft traffic goes
// through the proxies of Net. Its methods that take a testing.TB must run
// on that test's goroutine; the process-control methods return errors and
// may run anywhere.
type Cluster struct {
	// Net is the network between the nodes.
	Net *Network

	t    testing.TB
	bin  string
	dir  string
	opts Options
	hc   *http.Client

	mu           sync.Mutex
	nodes        []*Node
	closed       bool
	artifacts    string
	onFailure    []func(dir string)
	afterStop    []func()
	initialPeers string
}

// Node is one cairn server process. Its identity fields are fixed; the
// addresses may change when a restart finds a port taken.
type Node struct {
	// Process runs the node: its ID (the node's --id), Dir (which holds
	// DataDir and LogPath) and LogPath, and the methods that start, signal
	// and inspect the process and its log.
	*cluster.Process
	// Slot numbers the node: its Raft traffic comes from SlotIP(Slot).
	Slot int
	// DataDir is its --data-dir.
	DataDir string
	// AdvertiseAddr is its --raft-advertise-addr: the address of its proxy.
	AdvertiseAddr string

	proxy *Proxy
	join  []string // --join addresses; nil means --initial-cluster

	mu       sync.Mutex
	httpAddr string
	raftAddr string
	removed  bool
	prepared bool
}

// Start builds cairn (once per test binary), starts the nodes with
// --initial-cluster naming every node by its proxy address, and waits until
// they agree on a leader and every node knows the leader's HTTP address.
// Everything is torn down in t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = 30 * time.Second
	}
	c := &Cluster{
		Net:  NewNetwork(),
		t:    t,
		bin:  cluster.Binary(t),
		dir:  t.TempDir(),
		opts: opts,
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     10 * time.Second,
		}},
	}
	t.Cleanup(c.cleanup)
	var peers []string
	for i := 1; i <= opts.Nodes; i++ {
		n, err := c.newNode(i, "n"+strconv.Itoa(i), nil)
		if err != nil {
			t.Fatalf("chaos: %v", err)
		}
		peers = append(peers, n.ID+"="+n.AdvertiseAddr)
	}
	c.initialPeers = strings.Join(peers, ",")
	for _, n := range c.Nodes() {
		if err := c.startNode(n); err != nil {
			t.Fatalf("chaos: %v", err)
		}
	}
	c.WaitHealthy(t)
	return c
}

// newNode makes node id in slot, with its proxy, but does not start it.
func (c *Cluster) newNode(slot int, id string, join []string) (*Node, error) {
	dir := filepath.Join(c.dir, fmt.Sprintf("slot%d-%s", slot, id))
	n := &Node{
		Process: &cluster.Process{ID: id, Bin: c.bin, Dir: dir, LogPath: filepath.Join(dir, "cairn.log")},
		Slot:    slot,
		DataDir: filepath.Join(dir, "data"),
		join:    join,
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return nil, err
	}
	if err := n.pickPorts(); err != nil {
		return nil, err
	}
	p, err := c.Net.AddProxy(slot, n.raftAddr)
	if err != nil {
		return nil, err
	}
	n.proxy = p
	n.AdvertiseAddr = p.Addr()
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

// pickPorts chooses a free HTTP port on 127.0.0.1 and a free Raft port on
// the slot's own address.
func (n *Node) pickPorts() error {
	hp, err := cluster.FreePort("127.0.0.1")
	if err != nil {
		return err
	}
	rp, err := cluster.FreePort(SlotIP(n.Slot))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.httpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
	n.raftAddr = net.JoinHostPort(SlotIP(n.Slot), strconv.Itoa(rp))
	n.mu.Unlock()
	if n.proxy != nil {
		n.proxy.SetTarget(n.raftAddr)
	}
	return nil
}

// HTTPAddr is the node's HTTP address (127.0.0.1:port).
func (n *Node) HTTPAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.httpAddr
}

// RaftAddr is the address the node's Raft transport listens on.
func (n *Node) RaftAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.raftAddr
}

// URL is http://HTTPAddr.
func (n *Node) URL() string { return "http://" + n.HTTPAddr() }

func (c *Cluster) args(n *Node) []string {
	a := []string{"server",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr(),
		"--raft-addr", n.RaftAddr(),
		"--raft-advertise-addr", n.AdvertiseAddr,
		"--log-level", c.opts.LogLevel,
	}
	if n.join != nil {
		a = append(a, "--join", strings.Join(n.join, ","))
	} else {
		a = append(a, "--initial-cluster", c.initialPeers)
	}
	return append(a, c.opts.Flags...)
}

// startNode starts n's process and waits for /healthz; a port taken
// meanwhile makes it pick new ports and try again.
func (c *Cluster) startNode(n *Node) error {
	if !n.prepared && c.opts.BeforeStart != nil {
		if err := c.opts.BeforeStart(n); err != nil {
			return fmt.Errorf("node %s: before start: %w", n.ID, err)
		}
	}
	n.prepared = true
	for attempt := 1; ; attempt++ {
		if err := c.spawn(n, c.args(n)); err != nil {
			return err
		}
		err := c.waitUp(n)
		if err == nil {
			return nil
		}
		if errors.Is(err, cluster.ErrAddrInUse) && attempt < 4 {
			if perr := n.pickPorts(); perr != nil {
				return perr
			}
			continue
		}
		return err
	}
}

// spawn starts n's process with args, unless the cluster is closed.
func (c *Cluster) spawn(n *Node, args []string) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("chaos: cluster closed")
	}
	return n.Start(args)
}

// Live reports whether the process runs, is not paused, and is a member.
func (n *Node) Live() bool { return n.Process.Live() && !n.Removed() }

// Removed reports whether the node was removed from the cluster.
func (n *Node) Removed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removed
}

// waitUp waits until n answers /healthz; see cluster.Process.WaitUp.
func (c *Cluster) waitUp(n *Node) error {
	return n.WaitUp(c.http(n), c.opts.WaitTimeout)
}

// http is a helper for n's current HTTP address on the cluster's client.
func (c *Cluster) http(n *Node) *cluster.HTTP {
	return &cluster.HTTP{Base: n.URL(), Client: c.hc}
}

// do sends one request to n with its own timeout.
func (c *Cluster) do(n *Node, method, path string, body []byte, timeout time.Duration) (*cluster.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.http(n).Do(ctx, method, path, body, nil)
}

// Nodes returns every node ever started, in start order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Members returns the nodes that were not removed, running or not.
func (c *Cluster) Members() []*Node {
	return slices.DeleteFunc(c.Nodes(), (*Node).Removed)
}

// Live returns the members whose process runs and is not paused.
func (c *Cluster) Live() []*Node {
	return slices.DeleteFunc(c.Nodes(), func(n *Node) bool { return !n.Live() })
}

// Others returns the live nodes other than the given ones.
func (c *Cluster) Others(not ...*Node) []*Node {
	return slices.DeleteFunc(c.Live(), func(n *Node) bool { return slices.Contains(not, n) })
}

// Status is the answer of GET /v1/status (with the store hash when asked
// for it).
type Status = cluster.Status

// Status asks n for its status (with the store hash when hash is true).
func (c *Cluster) Status(n *Node, hash bool) (Status, error) {
	path := "/v1/status"
	if hash {
		path += "?hash=true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var s Status
	err := c.http(n).GetJSON(ctx, path, &s)
	return s, err
}

// poll calls cond every 50ms until it returns true or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	return cluster.Poll(timeout, 50*time.Millisecond, cond)
}

// agreedLeader asks every node of group; ok when they all answer, name
// the same leader, that leader is in group and says it leads, and (when
// needHTTP) every node knows its HTTP address.
func (c *Cluster) agreedLeader(group []*Node, needHTTP bool) (*Node, bool, string) {
	byID := map[string]*Node{}
	var ids []string
	for _, n := range group {
		byID[n.ID] = n
		ids = append(ids, n.ID)
	}
	id, ok, desc := cluster.AgreedLeader(ids, func(id string) (Status, error) { return c.Status(byID[id], false) }, needHTTP)
	return byID[id], ok, desc
}

// Leader waits until the live nodes agree on a leader and know its HTTP
// address, and returns it.
func (c *Cluster) Leader(t testing.TB) *Node {
	t.Helper()
	return c.LeaderAmong(t, nil)
}

// LeaderAmong waits until the given nodes (nil: the live ones) agree on
// a leader among them, and returns it.
func (c *Cluster) LeaderAmong(t testing.TB, group []*Node) *Node {
	t.Helper()
	return c.waitLeader(t, group, func(*Node) bool { return true }, "agreed leader")
}

// WaitNewLeader waits until the given nodes (nil: the live ones) agree on
// a leader other than old, and returns it.
func (c *Cluster) WaitNewLeader(t testing.TB, old *Node, group []*Node) *Node {
	t.Helper()
	return c.waitLeader(t, group, func(l *Node) bool { return l != old }, "leader other than "+old.ID)
}

// waitLeader waits until group (nil: the live nodes) agrees on a leader
// that accept takes, and returns it; what names it in the failure.
func (c *Cluster) waitLeader(t testing.TB, group []*Node, accept func(*Node) bool, what string) *Node {
	t.Helper()
	var leader *Node
	var desc string
	ok := poll(c.opts.WaitTimeout, func() bool {
		g := group
		if g == nil {
			g = c.Live()
		}
		var ok bool
		leader, ok, desc = c.agreedLeader(g, true)
		return ok && accept(leader)
	})
	if !ok {
		t.Fatalf("chaos: no %s within %v; last statuses: %s", what, c.opts.WaitTimeout, desc)
	}
	return leader
}

// Followers returns the live nodes other than the agreed leader.
func (c *Cluster) Followers(t testing.TB) []*Node {
	t.Helper()
	return c.Others(c.Leader(t))
}

// WaitHealthy waits until the live nodes agree on a leader, the leader
// lists every live node as a voter with its addresses, and every live
// node knows the leader's HTTP address.
func (c *Cluster) WaitHealthy(t testing.TB) *Node {
	t.Helper()
	var desc string
	var leader *Node
	ok := poll(c.opts.WaitTimeout, func() bool {
		var ok bool
		leader, ok, desc = c.agreedLeader(c.Live(), true)
		if !ok {
			return false
		}
		ms, err := c.MemberList(leader)
		if err != nil {
			desc = err.Error()
			return false
		}
		have := map[string]cluster.Member{}
		for _, m := range ms {
			have[m.ID] = m
		}
		for _, n := range c.Live() {
			m, ok := have[n.ID]
			if !ok || !m.Voter || m.RaftAddr != n.AdvertiseAddr || m.HTTPAddr != n.HTTPAddr() {
				desc = fmt.Sprintf("leader %s lists %+v; want %s with raft %s http %s", leader.ID, ms, n.ID, n.AdvertiseAddr, n.HTTPAddr())
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("chaos: cluster not healthy within %v; last: %s", c.opts.WaitTimeout, desc)
	}
	return leader
}

// MemberList reads GET /v1/cluster/members from n.
func (c *Cluster) MemberList(n *Node) ([]cluster.Member, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ms, err := c.http(n).Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.ID, err)
	}
	return ms, nil
}

// WaitConverged waits until every live node reports the same applied
// index, and the same store hash at that index, and returns the statuses.
func (c *Cluster) WaitConverged(t testing.TB) map[string]Status {
	t.Helper()
	var desc string
	var out map[string]Status
	ok := poll(c.opts.WaitTimeout, func() bool {
		out = map[string]Status{}
		var parts []string
		same := true
		var first *Status
		for _, n := range c.Live() {
			s, err := c.Status(n, true)
			if err != nil {
				parts = append(parts, fmt.Sprintf("%s: %v", n.ID, err))
				same = false
				continue
			}
			out[n.ID] = s
			parts = append(parts, fmt.Sprintf("%s: applied=%d hash=%s@%d revision=%d", n.ID, s.AppliedIndex, s.Hash, s.HashIndex, s.Revision))
			if s.Hash == "" || s.HashIndex != s.AppliedIndex {
				same = false
			}
			if first == nil {
				first = &s
			} else if s.AppliedIndex != first.AppliedIndex || s.Hash != first.Hash || s.Revision != first.Revision {
				same = false
			}
		}
		desc = strings.Join(parts, "; ")
		return same && first != nil
	})
	if !ok {
		t.Errorf("chaos: nodes did not converge within %v: %s", c.opts.WaitTimeout, desc)
		return nil
	}
	t.Logf("converged: %s", desc)
	return out
}

// Kill sends SIGKILL to n and waits for the exit.
func (c *Cluster) Kill(n *Node) error { return n.Kill(10 * time.Second) }

// Stop sends SIGTERM to n and waits up to timeout for the exit; it
// returns an error if the node had to be killed or exited with a status
// other than 0.
func (c *Cluster) Stop(n *Node, timeout time.Duration) error { return n.Process.Stop(timeout) }

// Pause sends SIGSTOP to n.
func (c *Cluster) Pause(n *Node) error {
	_, err := n.Signal(syscall.SIGSTOP)
	return err
}

// Resume sends SIGCONT to n.
func (c *Cluster) Resume(n *Node) error {
	_, err := n.Signal(syscall.SIGCONT)
	return err
}

// Restart starts n again with its data directory and waits for /healthz.
func (c *Cluster) Restart(n *Node) error { return c.startNode(n) }

// StartExpectingExit starts n and waits up to timeout for it to exit on
// its own; it returns the exit error (nil for status 0) and the log of
// this start. It fails if the node is still running at the deadline (the
// node is then killed).
func (c *Cluster) StartExpectingExit(n *Node, timeout time.Duration) (exitErr error, log string, err error) {
	if err := c.spawn(n, c.args(n)); err != nil {
		return nil, "", err
	}
	select {
	case <-n.Done():
		return n.ExitErr(), n.LastStartLog(), nil
	case <-time.After(timeout):
		return nil, n.LastStartLog(), fmt.Errorf("node %s still running %v after start", n.ID, timeout)
	}
}

// AddNode starts a new node id in a new slot, with an empty data
// directory, joining through every live node's HTTP address, and waits
// until the cluster is healthy with it.
func (c *Cluster) AddNode(t testing.TB, id string) *Node {
	t.Helper()
	slot := 0
	var join []string
	for _, n := range c.Nodes() {
		slot = max(slot, n.Slot)
	}
	for _, n := range c.Live() {
		join = append(join, n.HTTPAddr())
	}
	n, err := c.newNode(slot+1, id, join)
	if err != nil {
		t.Fatalf("chaos: add node %s: %v", id, err)
	}
	if err := c.startNode(n); err != nil {
		t.Fatalf("chaos: add node %s: %v", id, err)
	}
	c.WaitHealthy(t)
	return n
}

// ReplaceNode starts a new node id on the machine of old, which must be
// removed and stopped: same slot, address and proxy, same data directory
// (wiped), joining through every live node. It waits until the cluster is
// healthy with it.
func (c *Cluster) ReplaceNode(t testing.TB, old *Node, id string) *Node {
	t.Helper()
	if !old.Removed() || old.Running() {
		t.Fatalf("chaos: replace %s: it must be removed and stopped first", old.ID)
	}
	if err := os.RemoveAll(old.DataDir); err != nil {
		t.Fatalf("chaos: wipe %s: %v", old.DataDir, err)
	}
	if err := os.MkdirAll(old.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, n := range c.Live() {
		join = append(join, n.HTTPAddr())
	}
	n := &Node{
		Process: &cluster.Process{ID: id, Bin: c.bin, Dir: old.Dir, LogPath: old.LogPath},
		Slot:    old.Slot, DataDir: old.DataDir,
		AdvertiseAddr: old.AdvertiseAddr, proxy: old.proxy, join: join, prepared: true,
		httpAddr: old.HTTPAddr(), raftAddr: old.RaftAddr(),
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	if err := c.startNode(n); err != nil {
		t.Fatalf("chaos: replace %s by %s: %v", old.ID, id, err)
	}
	c.WaitHealthy(t)
	return n
}

// RemoveMember removes n from the cluster through another live node,
// retrying while there is no leader, and marks it removed.
func (c *Cluster) RemoveMember(t testing.TB, n *Node) {
	t.Helper()
	var last string
	ok := poll(c.opts.WaitTimeout, func() bool {
		for _, via := range c.Others(n) {
			r, err := c.do(via, http.MethodDelete, "/v1/cluster/members/"+n.ID, nil, 10*time.Second)
			switch {
			case err != nil:
				last = err.Error()
			case r.Status == http.StatusOK:
				return true
			default:
				last = r.String()
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("chaos: remove member %s: %s", n.ID, last)
	}
	n.mu.Lock()
	n.removed = true
	n.mu.Unlock()
}

// Log returns the node's whole log ("" if it cannot be read).
func (n *Node) Log() string {
	s, _ := n.Process.Log()
	return s
}

// LogMatches returns the first line of the node's log that re matches.
func (n *Node) LogMatches(re *regexp.Regexp) (string, bool) {
	for _, line := range strings.Split(n.Log(), "\n") {
		if re.MatchString(line) {
			return line, true
		}
	}
	return "", false
}

// AfterStop registers fn to run at cleanup once every process is gone
// (before the test's temporary directory is removed); the last
// registered runs first.
func (c *Cluster) AfterStop(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.afterStop = append(c.afterStop, fn)
}

// OnFailure registers fn to write more into the artifact directory when
// the test fails.
func (c *Cluster) OnFailure(fn func(dir string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onFailure = append(c.onFailure, fn)
}

// Artifacts returns the directory for this test's failure artifacts,
// creating it on first use. It is not removed after the test.
func (c *Cluster) Artifacts() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.artifacts == "" {
		name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(c.t.Name(), "_")
		dir, err := os.MkdirTemp("", "cairn-chaos-"+name+"-*")
		if err != nil {
			c.t.Errorf("chaos: artifact dir: %v", err)
			return os.TempDir()
		}
		c.artifacts = dir
	}
	return c.artifacts
}

// cleanup kills every process and closes the network; when the test
// failed it copies every node's log into the artifact directory.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	c.closed = true
	nodes := slices.Clone(c.nodes)
	c.mu.Unlock()
	if err := cluster.KillAll(nodes); err != nil {
		c.t.Errorf("chaos cleanup: %v", err)
	}
	c.Net.Close()
	c.hc.CloseIdleConnections()
	c.mu.Lock()
	after := slices.Clone(c.afterStop)
	c.mu.Unlock()
	for i := len(after) - 1; i >= 0; i-- {
		after[i]()
	}
	if !c.t.Failed() {
		return
	}
	dir := c.Artifacts()
	for _, n := range nodes {
		copyFile(n.LogPath, filepath.Join(dir, n.ID+".log"))
		c.t.Logf("----- log of %s (slot %d, http %s, raft %s via %s), last 40 lines -----\n%s",
			n.ID, n.Slot, n.HTTPAddr(), n.RaftAddr(), n.AdvertiseAddr, n.LogTail(40))
	}
	c.mu.Lock()
	fns := slices.Clone(c.onFailure)
	c.mu.Unlock()
	for _, fn := range fns {
		fn(dir)
	}
	c.t.Logf("chaos: failure artifacts (node logs, history, visualization) in %s", dir)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
