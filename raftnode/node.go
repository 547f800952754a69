package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/cairn-kv/cairn/raftnode/batch"
	"github.com/cairn-kv/cairn/store"
)

// Node is one member of a cairn cluster: a Raft instance replicating a
// store.Store.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store

	raft      *raft.Raft
	trans     *raft.NetworkTransport
	ctrans    *clampTransport
	alog      *asyncLog
	raftPtr   atomic.Pointer[raft.Raft]
	logStore  *logStore
	logs      raft.LogStore
	snapshots *raft.FileSnapshotStore

	// readReady is the leadership epoch whose barrier has completed, so
	// that reads on this leader see every entry of earlier terms.
	epoch     atomic.Uint64
	readReady atomic.Uint64
	readyCh   chan struct{} // closed and replaced when readReady changes
	readyMu   sync.Mutex

	verify   verifier
	commit   *batch.Batcher[[]byte, proposalResult]
	notifyCh <-chan bool

	removed chan struct{} // closed when Raft stops because this node was removed
	// wasMember is set once this node has seen itself in the cluster's
	// configuration (watchRemoval or registered), so that leaving it
	// means removal.
	wasMember atomic.Bool
	regDone   atomic.Bool // register has finished

	caughtUp   atomic.Bool
	catchUpIdx atomic.Uint64
	// startupRelease gives back the pages start-up read, once, as the
	// node first catches up (Ready).
	startupRelease sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// New opens the Raft state in cfg.DataDir, starts Raft replicating st, and
// bootstraps or joins as cfg says. It returns once Raft runs; joining goes
// on in the background.
func New(cfg Config, st *store.Store) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "raftnode"), store: st, readyCh: make(chan struct{}), removed: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.verify.n = n
	n.commit = newGroupCommit(n, cfg.MaxInflightProposals)
	if err := n.open(); err != nil {
		n.cancel()
		n.closeStores()
		return nil, err
	}
	n.wg.Add(4)
	go n.watchLeadership()
	go n.register()
	go n.watchRemoval()
	go n.releasePages()
	return n, nil
}

func (n *Node) open() error {
	cfg := n.cfg
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	level, _ := parseLevel(cfg.RaftLogLevel)
	hl := NewHCLogger(cfg.Logger, "raft", level)

	var err error
	logPath := filepath.Join(dir, "raft.db")
	bs, err := raftboltdb.New(raftboltdb.Options{
		Path:        logPath,
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return fmt.Errorf("raftnode: open raft log %s: %w", logPath, err)
	}
	n.logStore = &logStore{BoltStore: bs, path: logPath}
	// bbolt walked every page of the log to rebuild its free list; give
	// those pages back (see internal/mapped).
	n.releaseLogPages()
	n.alog, err = newAsyncLog(n.logStore, func() bool { r := n.raftPtr.Load(); return r != nil && r.State() == raft.Leader }, func() {
		if r := n.raftPtr.Load(); r != nil && r.State() == raft.Leader {
			n.log.Warn("handing leadership over: this node cannot write its raft log")
			if err := r.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer failed; this node steps down at its next write", "err", err)
			}
		}
	}, n.log)
	if err != nil {
		return err
	}
	n.logs, err = raft.NewLogCache(64, n.alog)
	if err != nil {
		return err
	}
	n.snapshots, err = raft.NewFileSnapshotStoreWithLogger(dir, cfg.SnapshotRetain, hl.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	stream, err := newStreamLayer(cfg.RaftAddr, cfg.RaftAdvertiseAddr)
	if err != nil {
		return fmt.Errorf("raftnode: listen on %s: %w", cfg.RaftAddr, err)
	}
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hl.Named("transport"),
	})
	n.trans = nt
	n.ctrans = &clampTransport{NetworkTransport: nt, durable: n.alog.durable.Load}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// The store keeps its applied index with its data, so a restart
	// resumes from the bbolt file instead of reloading a snapshot, unless
	// the store is behind the newest snapshot (it was rebuilt or lost).
	snaps, err := n.snapshots.List()
	if err != nil {
		return fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	rc.NoSnapshotRestoreOnStart = len(snaps) == 0 || n.store.AppliedIndex() >= snaps[0].Index
	if !rc.NoSnapshotRestoreOnStart {
		n.log.Warn("store is behind the newest snapshot; restoring it", "store_index", n.store.AppliedIndex(), "snapshot_index", snaps[0].Index)
		// Raft would fall back to an older snapshot if the newest is
		// damaged, then panic for want of log entries compacted behind
		// the newest one. Check it first and refuse with a clear message.
		if err := checkSnapshot(n.snapshots, snaps[0].ID); err != nil {
			return fmt.Errorf("raftnode: the state machine is behind the newest snapshot (%s), which is damaged: %w; "+
				"this node cannot rebuild its data: remove it from the cluster, wipe %s and join it again", snaps[0].ID, err, cfg.DataDir)
		}
	}
	rc.Logger = hl
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	n.notifyCh = notify

	existing, err := raft.HasExistingState(n.logs, n.logStore, n.snapshots)
	if err != nil {
		return fmt.Errorf("raftnode: read raft state: %w", err)
	}
	if applied := n.store.AppliedIndex(); !existing && applied > 0 {
		return fmt.Errorf("raftnode: the store has applied index %d but the raft log in %s is empty; refusing to start with mismatched data", applied, dir)
	}
	n.raft, err = raft.NewRaft(rc, &gatedFSM{BatchingFSM: store.NewFSM(n.store), log: n.alog}, n.logs, n.logStore, n.snapshots, n.ctrans)
	if err != nil {
		return fmt.Errorf("raftnode: start raft: %w", err)
	}
	n.raftPtr.Store(n.raft)
	if existing {
		n.log.Info("restarting with existing raft state", "id", cfg.ID, "applied_index", n.store.AppliedIndex())
		return nil
	}
	var servers []raft.Server
	switch {
	case cfg.Bootstrap:
		servers = []raft.Server{{ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAdvertiseAddr)}}
	case len(cfg.InitialCluster) > 0:
		for _, p := range cfg.InitialCluster {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
	}
	if servers != nil {
		n.log.Info("bootstrapping cluster", "members", len(servers))
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			return fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	return nil
}

// Removed is closed when Raft has stopped on its own because this node was
// removed from the cluster; the node can then serve nothing and should
// stop.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// watchRemoval notices this node's removal: a removed leader's Raft shuts
// itself down (hashicorp/raft's ShutdownOnRemove); a removed follower
// keeps running but finds itself missing from the configuration it was
// once part of.
func (n *Node) watchRemoval() {
	defer n.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.closed.Load() {
			return
		}
		removed := n.raft.State() == raft.Shutdown
		if f := n.raft.GetConfiguration(); !removed && f.Error() == nil {
			in := false
			for _, s := range f.Configuration().Servers {
				in = in || string(s.ID) == n.cfg.ID
			}
			if in {
				n.wasMember.Store(true)
			}
			removed = n.wasMember.Load() && !in
		}
		if removed {
			n.log.Warn("this node was removed from the cluster")
			close(n.removed)
			return
		}
	}
}

// checkSnapshot reads snapshot id through the snapshot store, which
// verifies its checksum.
func checkSnapshot(ss *raft.FileSnapshotStore, id string) error {
	_, rc, err := ss.Open(id)
	if err != nil {
		return err
	}
	return rc.Close()
}

// ID is this node's server ID.
func (n *Node) ID() string { return n.cfg.ID }

// Store is the replicated store.
func (n *Node) Store() *store.Store { return n.store }

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's ID and HTTP address as far as this
// node knows; either may be empty.
func (n *Node) Leader() (id, httpAddr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	m, _ := n.store.Member(string(lid))
	return string(lid), m.HTTPAddr
}

// WaitForLeader waits until a leader with a known HTTP address is known,
// for at most wait (no bound when wait <= 0) and until ctx ends: then
// ErrNoLeader. When a leader is known it returns at once, without a timer.
func (n *Node) WaitForLeader(ctx context.Context, wait time.Duration) (id, httpAddr string, err error) {
	var t *time.Ticker // only once there is something to wait for
	var until time.Time
	for {
		if id, addr := n.Leader(); id != "" && (addr != "" || id == n.cfg.ID) {
			return id, addr, nil
		}
		if t == nil {
			t = time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			until = time.Now().Add(wait)
		} else if wait > 0 && time.Now().After(until) {
			return "", "", ErrNoLeader
		}
		select {
		case <-ctx.Done():
			return "", "", ErrNoLeader
		case <-n.ctx.Done():
			return "", "", ErrShutdown
		case <-t.C:
		}
	}
}

// Apply proposes cmd and waits until it is committed and applied on this
// node (the leader). The context's deadline bounds the wait; if it passes
// after the command was proposed the error is ErrUnknownOutcome. Apply is
// the one path every write takes (with ApplyAll, its form for many).
func (n *Node) Apply(ctx context.Context, cmd *store.Command) (*store.Result, error) {
	data, err := n.admit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	r, err := n.commit.Do(ctx, data)
	return outcome(r, err)
}

// ApplyAll applies each of cmds as Apply would, from the calling
// goroutine: they are queued for group commit together. res[i] and errs[i]
// are what Apply would have returned for cmds[i].
func (n *Node) ApplyAll(ctx context.Context, cmds []*store.Command) (res []*store.Result, errs []error) {
	res = make([]*store.Result, len(cmds))
	errs = make([]error, len(cmds))
	data := make([][]byte, len(cmds))
	for i, cmd := range cmds {
		var err error
		if data[i], err = n.admit(ctx, cmd); err != nil {
			for j := range errs {
				errs[j] = err
			}
			return res, errs
		}
	}
	rs, berrs := n.commit.DoAll(ctx, data)
	for i := range rs {
		res[i], errs[i] = outcome(rs[i], berrs[i])
	}
	return res, errs
}

// admit checks that this node may propose cmd now, stamps it with the
// leader's clock and encodes it. Every write passes here.
func (n *Node) admit(ctx context.Context, cmd *store.Command) ([]byte, error) {
	if n.closed.Load() {
		return nil, ErrShutdown
	}
	if !n.IsLeader() {
		return nil, ErrNotLeader
	}
	cmd.Now = time.Now().UnixNano()
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= 0 {
		return nil, ErrTimeout
	}
	return cmd.Encode(), nil
}

// Status is a snapshot of this node's Raft state.
type Status struct {
	// ID is this node's ID.
	ID string
	// State is "Leader", "Follower", "Candidate" or "Shutdown".
	State string
	// LeaderID and LeaderHTTPAddr name the leader this node knows of.
	LeaderID, LeaderHTTPAddr string
	// Term is the current Raft term.
	Term uint64
	// CommitIndex is the highest log index known committed.
	CommitIndex uint64
	// AppliedIndex is the highest log index applied to the store.
	AppliedIndex uint64
	// LastLogIndex is the last index in this node's log.
	LastLogIndex uint64
	// Revision is the store revision.
	Revision int64
}

// Status reports this node's Raft state.
func (n *Node) Status() Status {
	lid, laddr := n.Leader()
	term, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	return Status{
		ID:             n.cfg.ID,
		State:          n.raft.State().String(),
		LeaderID:       lid,
		LeaderHTTPAddr: laddr,
		Term:           term,
		CommitIndex:    n.raft.CommitIndex(),
		AppliedIndex:   n.store.AppliedIndex(),
		LastLogIndex:   n.raft.LastIndex(),
		Revision:       n.store.Revision(),
	}
}

// Ready reports whether the node knows a leader and has applied every
// entry that was committed when it first learned of one.
func (n *Node) Ready() bool {
	id, _ := n.Leader()
	if id == "" {
		return false
	}
	if n.caughtUp.Load() {
		return true
	}
	target := n.catchUpIdx.Load()
	if target == 0 {
		// A node that has not yet heard a commit index from the leader
		// (a new member being sent old entries or a snapshot) cannot
		// know how far behind it is.
		target = n.raft.CommitIndex()
		if target == 0 {
			return false
		}
		n.catchUpIdx.Store(target)
	}
	if n.appliedThrough(target) {
		// Start-up read the whole log (Raft scans it for configuration
		// entries and replays it to the store); give those pages back
		// before the node says it serves, so that it does not start out
		// hundreds of MiB larger than it runs. Concurrent callers wait
		// for the release, and see the node not ready until it is done.
		n.startupRelease.Do(func() {
			n.releaseLogPages()
			n.store.ReleasePages()
		})
		n.caughtUp.Store(true)
		return true
	}
	return false
}

// releaseLogPages drops the resident pages of the Raft log's mapping
// (see logStore.releasePages).
func (n *Node) releaseLogPages() {
	if _, err := n.logStore.releasePages(); err != nil {
		n.log.Debug("release mapped pages", "err", err)
	}
}

// pageInterval is how often a serving node gives back the pages of its
// files' mappings that bbolt's commits left resident.
const pageInterval = 2 * time.Second

// releasePages keeps the node's resident memory from growing with the
// files: each append to the Raft log and each commit of the state machine
// reads back, through bbolt's mapping, pages the previous one wrote, and
// every such page would otherwise stay counted in the process's RSS (in
// benchmarks, 180 MiB of the log's within a minute of writes). Dropping
// them every pageInterval costs a few page faults on the hot pages (a
// bulk load of 1,000,000 keys touches about 16 MiB a second).
func (n *Node) releasePages() {
	defer n.wg.Done()
	t := time.NewTicker(pageInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if n.closed.Load() || !n.caughtUp.Load() {
			continue
		}
		n.releaseLogPages()
		n.store.ReleasePages()
	}
}

// TransferLeadership hands leadership to another voter if this node leads
// and has one, so the cluster does not wait out an election timeout.
func (n *Node) TransferLeadership() {
	if n.IsLeader() && n.voters() > 1 {
		n.log.Info("transferring leadership")
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer failed", "err", err)
		}
	}
}

// Shutdown stops the node. A leader first hands leadership on
// (TransferLeadership).
func (n *Node) Shutdown() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.TransferLeadership()
	n.cancel()
	// The log's queue is written and the state machine's waits end before
	// Raft shuts down (it waits for the state machine).
	if n.alog != nil {
		n.alog.close()
	}
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	n.closeStores()
	return err
}

func (n *Node) closeStores() {
	if n.trans != nil {
		n.trans.Close()
	}
	if n.alog != nil {
		n.alog.close()
	}
	if n.logStore != nil {
		n.logStore.Close()
	}
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// Snapshot forces a Raft snapshot now (and log compaction).
func (n *Node) Snapshot() error { return translate(n.raft.Snapshot().Error()) }

func parseLevel(s string) (hclog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return hclog.Debug, nil
	case "info":
		return hclog.Info, nil
	case "warn", "warning":
		return hclog.Warn, nil
	case "error":
		return hclog.Error, nil
	}
	return hclog.NoLevel, fmt.Errorf("raftnode: unknown log level %q (want debug, info, warn or error)", s)
}
