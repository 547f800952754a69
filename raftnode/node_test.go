package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/inproc"
)

func TestThreeNodesElectOneLeaderAndRegister(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	for _, tn := range c.Nodes {
		id, addr := tn.Raft.Leader()
		if id != l.ID || addr != l.HTTPAddr {
			t.Errorf("%s: Leader() = %q, %q; want %q, %q", tn.ID, id, addr, l.ID, l.HTTPAddr)
		}
		gid, gaddr, err := tn.Raft.WaitForLeader(inproc.Context(t, time.Second), 0)
		if err != nil || gid != l.ID || gaddr != l.HTTPAddr {
			t.Errorf("%s: WaitForLeader = %q, %q, %v", tn.ID, gid, gaddr, err)
		}
		st := tn.Raft.Status()
		wantState := "Follower"
		if tn == l {
			wantState = "Leader"
		}
		if st.ID != tn.ID || st.State != wantState || st.LeaderID != l.ID || st.LeaderHTTPAddr != l.HTTPAddr || st.Term == 0 {
			t.Errorf("%s: Status() = %+v", tn.ID, st)
		}
		if tn.Raft.ID() != tn.ID {
			t.Errorf("ID() = %q, want %q", tn.Raft.ID(), tn.ID)
		}
		if tn.Raft.Store() != tn.Store {
			t.Errorf("%s: Store() is not the store it was given", tn.ID)
		}
	}
	inproc.WaitFor(t, 5*time.Second, "every node ready", func() error {
		for _, tn := range c.Nodes {
			if !tn.Raft.Ready() {
				return fmt.Errorf("%s not ready", tn.ID)
			}
		}
		return nil
	})
}

func TestApplyReplicatesToEveryNode(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	before := l.Store.Revision()
	res, err := l.Raft.Apply(inproc.Context(t, 5*time.Second), store.NewPut("greeting", []byte("hello"), -1, 0))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Revision != before+1 || !res.Succeeded {
		t.Fatalf("Apply result = %+v, want revision %d", res, before+1)
	}
	inproc.WaitRevision(t, res.Revision, c.Nodes...)
	for _, tn := range c.Nodes {
		kv, rev, err := tn.Store.Get("greeting")
		if err != nil || string(kv.Value) != "hello" || kv.ModRevision != res.Revision || rev < res.Revision {
			t.Errorf("%s: Get = %+v, %d, %v", tn.ID, kv, rev, err)
		}
		if tn.Store.AppliedIndex() == 0 {
			t.Errorf("%s: applied index 0 after a write", tn.ID)
		}
	}

	// A CAS that fails is not an error of Apply but a result with a conflict.
	res2, err := l.Raft.Apply(inproc.Context(t, 5*time.Second), store.NewPut("greeting", []byte("x"), res.Revision+100, 0))
	if err != nil {
		t.Fatalf("CAS Apply: %v", err)
	}
	if res2.Succeeded || res2.Conflict == nil || res2.Conflict.ModRevision != res.Revision || res2.Revision != res.Revision {
		t.Fatalf("failed CAS result = %+v (conflict %+v)", res2, res2.Conflict)
	}
}

func TestApplyWithExpiredContext(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	l := c.Leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	rev := l.Store.Revision()
	if _, err := l.Raft.Apply(ctx, store.NewPut("k", []byte("v"), -1, 0)); !errors.Is(err, raftnode.ErrTimeout) {
		t.Fatalf("Apply with a passed deadline = %v, want ErrTimeout", err)
	}
	if got := l.Store.Revision(); got != rev {
		t.Fatalf("revision moved from %d to %d after a call that timed out before proposing", rev, got)
	}
}

func TestFollowerRefusesLeaderOnlyCalls(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	for _, f := range c.Followers(l) {
		ctx := inproc.Context(t, 2*time.Second)
		if _, err := f.Raft.Apply(ctx, store.NewPut("k", []byte("v"), -1, 0)); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: Apply = %v, want ErrNotLeader", f.ID, err)
		}
		if _, err := f.Raft.ReadIndex(ctx); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: ReadIndex = %v, want ErrNotLeader", f.ID, err)
		}
		if err := f.Raft.LeaderRead(ctx); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: LeaderRead = %v, want ErrNotLeader", f.ID, err)
		}
		if err := f.Raft.AddMember(ctx, store.Member{ID: "x", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: AddMember = %v, want ErrNotLeader", f.ID, err)
		}
		if err := f.Raft.RemoveMember(ctx, l.ID); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: RemoveMember = %v, want ErrNotLeader", f.ID, err)
		}
		if f.Raft.IsLeader() {
			t.Errorf("%s: IsLeader on a follower", f.ID)
		}
	}
	c.WaitMembers(t, c.Nodes...)
}

func TestReadIndexSeesEarlierWrites(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	var last int64
	for i := 0; i < 10; i++ {
		last = c.Put(t, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	ctx := inproc.Context(t, 5*time.Second)
	idx, err := l.Raft.ReadIndex(ctx)
	if err != nil {
		t.Fatalf("ReadIndex: %v", err)
	}
	if idx == 0 {
		t.Fatal("ReadIndex returned index 0 after writes")
	}
	if err := l.Raft.WaitApplied(ctx, idx); err != nil {
		t.Fatalf("WaitApplied(%d): %v", idx, err)
	}
	if rev := l.Store.Revision(); rev < last {
		t.Fatalf("after ReadIndex+WaitApplied the revision is %d, want >= %d", rev, last)
	}
	kv, _, err := l.Store.Get("k09")
	if err != nil || string(kv.Value) != "9" {
		t.Fatalf("Get(k09) = %+v, %v", kv, err)
	}
	if err := l.Raft.LeaderRead(ctx); err != nil {
		t.Fatalf("LeaderRead on the leader: %v", err)
	}

	// A follower that is handed the leader's read index can serve the
	// read once it has applied it.
	for _, f := range c.Followers(l) {
		if err := f.Raft.WaitApplied(ctx, idx); err != nil {
			t.Fatalf("%s: WaitApplied(%d): %v", f.ID, idx, err)
		}
		if rev := f.Store.Revision(); rev < last {
			t.Errorf("%s: revision %d after WaitApplied(%d), want >= %d", f.ID, rev, idx, last)
		}
	}

	// WaitApplied of an index far ahead ends with the context.
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Raft.WaitApplied(short, idx+1_000_000); !errors.Is(err, raftnode.ErrTimeout) {
		t.Fatalf("WaitApplied far ahead = %v, want ErrTimeout", err)
	}
}

func TestConcurrentReadIndex(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	rev := c.Put(t, "k", "v")
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			idx, err := l.Raft.ReadIndex(ctx)
			if err == nil {
				err = l.Raft.WaitApplied(ctx, idx)
			}
			if err == nil && l.Store.Revision() < rev {
				err = fmt.Errorf("revision %d after read index %d, want >= %d", l.Store.Revision(), idx, rev)
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestLeaderShutdownTransfersLeadership(t *testing.T) {
	// Long timeouts: an ordinary election would take at least 1.5s after
	// the leader goes, so a new leader well before that shows a transfer.
	c := inproc.Start(t, 3, inproc.Options{Heartbeat: 1500 * time.Millisecond, Election: 1500 * time.Millisecond, Lease: 500 * time.Millisecond})
	old := c.Leader(t)
	rev := c.Put(t, "before", "1")
	inproc.WaitRevision(t, rev, c.Nodes...)

	start := time.Now()
	c.Stop(old)
	rest := c.Running()
	nl := c.LeaderAmong(t, 5*time.Second, rest...)
	took := time.Since(start)
	t.Logf("new leader %s %v after shutdown of %s began", nl.ID, took, old.ID)
	if took > 1200*time.Millisecond {
		t.Errorf("new leader took %v; with a 1.5s heartbeat timeout that is an election, not a transfer", took)
	}

	// The two remaining nodes still make a quorum and accept writes.
	for i := 0; i < 3; i++ {
		rev = c.Put(t, fmt.Sprintf("after%d", i), "2")
	}
	inproc.WaitRevision(t, rev, rest...)
	for _, tn := range rest {
		if kv, _, err := tn.Store.Get("after2"); err != nil || string(kv.Value) != "2" {
			t.Errorf("%s: Get(after2) = %+v, %v", tn.ID, kv, err)
		}
	}

	// Calls on the stopped node fail cleanly.
	if _, err := old.Raft.Apply(inproc.Context(t, time.Second), store.NewPut("k", nil, -1, 0)); !errors.Is(err, raftnode.ErrShutdown) {
		t.Errorf("Apply after Shutdown = %v, want ErrShutdown", err)
	}
	if err := old.Raft.Shutdown(); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestRestartRejoinsWithoutReapplying(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	for i := 0; i < 5; i++ {
		c.Put(t, "k", fmt.Sprint(i))
	}
	rev := c.Put(t, "other", "x")
	inproc.WaitRevision(t, rev, c.Nodes...)
	l := c.Leader(t)

	for _, tn := range []*inproc.Node{c.Followers(l)[0], l} {
		t.Run("restart "+tn.ID, func(t *testing.T) {
			before := tn.Store.Revision()
			kvBefore, _, _ := tn.Store.Get("k")
			c.Stop(tn)
			appliedBefore := func() uint64 {
				st, err := tn.OpenStore()
				if err != nil {
					t.Fatalf("reopen store: %v", err)
				}
				defer st.Close()
				return st.AppliedIndex()
			}()
			c.MustStart(tn)
			if got := tn.Store.AppliedIndex(); got != appliedBefore {
				t.Fatalf("applied index on reopen = %d, want %d", got, appliedBefore)
			}
			c.WaitMembers(t, c.Nodes...)
			if got := tn.Store.Revision(); got != before {
				t.Fatalf("revision after restart = %d, want %d (entries re-applied?)", got, before)
			}
			kv, _, err := tn.Store.Get("k")
			if err != nil || kv.Version != kvBefore.Version || kv.ModRevision != kvBefore.ModRevision {
				t.Fatalf("after restart Get(k) = %+v, %v; before %+v", kv, err, kvBefore)
			}

			// New writes reach it and move its applied index on.
			rev := c.Put(t, "after-"+tn.ID, "y")
			inproc.WaitRevision(t, rev, c.Nodes...)
			if got := tn.Store.AppliedIndex(); got <= appliedBefore {
				t.Fatalf("applied index %d did not move past %d", got, appliedBefore)
			}
			if rev != before+1 {
				t.Fatalf("first write after restart has revision %d, want %d", rev, before+1)
			}
		})
	}
}

func TestRestartWithNewAddressesUpdatesInPlace(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	fs := c.Followers(l)
	t.Run("raft address", func(t *testing.T) {
		f := fs[0]
		c.Stop(f)
		// A write while f is down breaks the leader's pipeline to f, so
		// its replication is back on plain RPCs when f returns at its new
		// address. Otherwise the configuration change that records the
		// address is the first entry sent down the dead pipeline, and
		// hashicorp/raft v1.7.3 logs the peer it is rewriting without its
		// lock (hashicorp/raft#681), which the race detector reports.
		c.Put(t, "while-moving", "yes")
		f.RaftAddr = inproc.FreeAddr(t)
		c.MustStart(f)
		c.WaitMembers(t, c.Nodes...)
		rev := c.Put(t, "moved", "yes")
		inproc.WaitRevision(t, rev, f)
	})
	t.Run("http address", func(t *testing.T) {
		f := fs[1]
		c.Stop(f)
		f.HTTPAddr = inproc.FreeAddr(t)
		c.MustStart(f)
		// Every node learns the new address (through the log), so
		// forwarding to it works should it lead.
		c.WaitMembers(t, c.Nodes...)
		rev := c.Put(t, "moved-http", "yes")
		inproc.WaitRevision(t, rev, f)
	})
}

func TestRemoveMember(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	ctx := inproc.Context(t, 5*time.Second)

	err := l.Raft.RemoveMember(ctx, "nobody")
	if !errors.Is(err, raftnode.ErrUnknownMember) {
		t.Fatalf("RemoveMember(nobody) = %v, want ErrUnknownMember", err)
	}
	c.WaitMembers(t, c.Nodes...)

	gone := c.Followers(l)[0]
	if err := l.Raft.RemoveMember(ctx, gone.ID); err != nil {
		t.Fatalf("RemoveMember(%s): %v", gone.ID, err)
	}
	c.Stop(gone)
	rest := c.Running()
	c.WaitMembers(t, rest...)
	inproc.WaitFor(t, 5*time.Second, "the removed member's addresses to be forgotten", func() error {
		for _, tn := range rest {
			if m, ok := tn.Store.Member(gone.ID); ok {
				return fmt.Errorf("%s still records %+v", tn.ID, m)
			}
		}
		return nil
	})
	rev := c.Put(t, "after-remove", "1")
	inproc.WaitRevision(t, rev, rest...)
}

func TestInitialClusterRegistersEveryNode(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{Initial: true})
	rev := c.Put(t, "k", "v")
	inproc.WaitRevision(t, rev, c.Nodes...)
	// Restarting with the same InitialCluster is a no-op bootstrap.
	f := c.Followers(c.Leader(t))[0]
	c.Stop(f)
	c.MustStart(f)
	c.WaitMembers(t, c.Nodes...)
}

func TestRefusesStoreAheadOfEmptyRaftLog(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	tn := c.Nodes[0]
	c.Put(t, "k", "v")
	c.Stop(tn)
	if err := os.RemoveAll(filepath.Join(tn.Dir, "raft")); err != nil {
		t.Fatal(err)
	}
	err := c.Start(tn)
	if err == nil {
		t.Fatal("node started with a store at applied index > 0 and an empty raft log")
	}
	t.Logf("start refused: %v", err)
	// The refusal released the Raft port and the log file.
	err2 := c.Start(tn)
	if err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second start = %v, want the same refusal %v", err2, err)
	}
}

func TestSnapshotInstallOnNewNode(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{TrailingLogs: 2})
	const n = 40
	var rev int64
	for i := 0; i < n; i++ {
		rev = c.Put(t, fmt.Sprintf("key/%02d", i), fmt.Sprintf("value %d", i))
	}
	l := c.Leader(t)
	inproc.WaitRevision(t, rev, c.Nodes...)
	for _, tn := range c.Nodes {
		if err := tn.Raft.Snapshot(); err != nil {
			t.Fatalf("%s: Snapshot: %v", tn.ID, err)
		}
	}
	if st := l.Raft.Status(); st.LastLogIndex == 0 {
		t.Fatalf("leader status %+v", st)
	}

	nn := c.AddNode()
	c.MustStart(nn)
	c.WaitMembers(t, c.Nodes...)
	inproc.WaitRevision(t, rev, nn)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("key/%02d", i)
		kv, _, err := nn.Store.Get(key)
		if err != nil || string(kv.Value) != fmt.Sprintf("value %d", i) {
			t.Errorf("new node: Get(%s) = %+v, %v", key, kv, err)
		}
	}
	snaps, err := os.ReadDir(filepath.Join(nn.Dir, "raft", "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("new node has no installed snapshot (%v): %v", snaps, err)
	}
	// It keeps following after the install.
	rev = c.Put(t, "after-install", "1")
	inproc.WaitRevision(t, rev, nn)
}

// A node removed right after it joined, sooner than the removal watch's
// ticks, still notices its removal.
func TestRemovedRightAfterJoining(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	n4 := c.AddNode()
	c.MustStart(n4)
	inproc.WaitFor(t, 10*time.Second, "n4 to be registered", func() error {
		if !n4.Raft.Registered() {
			return errors.New("not yet")
		}
		return nil
	})
	if err := l.Raft.RemoveMember(inproc.Context(t, 5*time.Second), n4.ID); err != nil {
		t.Fatalf("RemoveMember(n4): %v", err)
	}
	select {
	case <-n4.Raft.Removed():
	case <-time.After(10 * time.Second):
		ms, err := n4.Raft.Members()
		t.Fatalf("n4 did not notice its removal within 10s; it sees %+v %v, status %+v", ms, err, n4.Raft.Status())
	}
}
