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
)

func TestThreeNodesElectOneLeaderAndRegister(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	for _, tn := range c.nodes {
		id, addr := tn.node.Leader()
		if id != l.id || addr != l.httpAddr {
			t.Errorf("%s: Leader() = %q, %q; want %q, %q", tn.id, id, addr, l.id, l.httpAddr)
		}
		gid, gaddr, err := tn.node.WaitForLeader(ctxT(t, time.Second))
		if err != nil || gid != l.id || gaddr != l.httpAddr {
			t.Errorf("%s: WaitForLeader = %q, %q, %v", tn.id, gid, gaddr, err)
		}
		st := tn.node.Status()
		wantState := "Follower"
		if tn == l {
			wantState = "Leader"
		}
		if st.ID != tn.id || st.State != wantState || st.LeaderID != l.id || st.LeaderHTTPAddr != l.httpAddr || st.Term == 0 {
			t.Errorf("%s: Status() = %+v", tn.id, st)
		}
		if tn.node.ID() != tn.id {
			t.Errorf("ID() = %q, want %q", tn.node.ID(), tn.id)
		}
		if tn.node.Store() != tn.st {
			t.Errorf("%s: Store() is not the store it was given", tn.id)
		}
	}
	waitFor(t, 5*time.Second, "every node ready", func() error {
		for _, tn := range c.nodes {
			if !tn.node.Ready() {
				return fmt.Errorf("%s not ready", tn.id)
			}
		}
		return nil
	})
}

func TestApplyReplicatesToEveryNode(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	before := l.st.Revision()
	res, err := l.node.Apply(ctxT(t, 5*time.Second), store.NewPut("greeting", []byte("hello"), -1, 0))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if res.Revision != before+1 || !res.Succeeded {
		t.Fatalf("Apply result = %+v, want revision %d", res, before+1)
	}
	waitRevision(t, res.Revision, c.nodes...)
	for _, tn := range c.nodes {
		kv, rev, err := tn.st.Get("greeting")
		if err != nil || string(kv.Value) != "hello" || kv.ModRevision != res.Revision || rev < res.Revision {
			t.Errorf("%s: Get = %+v, %d, %v", tn.id, kv, rev, err)
		}
		if tn.st.AppliedIndex() == 0 {
			t.Errorf("%s: applied index 0 after a write", tn.id)
		}
	}

	// A CAS that fails is not an error of Apply but a result with a conflict.
	res2, err := l.node.Apply(ctxT(t, 5*time.Second), store.NewPut("greeting", []byte("x"), res.Revision+100, 0))
	if err != nil {
		t.Fatalf("CAS Apply: %v", err)
	}
	if res2.Succeeded || res2.Conflict == nil || res2.Conflict.ModRevision != res.Revision || res2.Revision != res.Revision {
		t.Fatalf("failed CAS result = %+v (conflict %+v)", res2, res2.Conflict)
	}
}

func TestApplyWithExpiredContext(t *testing.T) {
	c := mustNewCluster(t, 1, clusterOptions{})
	l := c.leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	rev := l.st.Revision()
	if _, err := l.node.Apply(ctx, store.NewPut("k", []byte("v"), -1, 0)); !errors.Is(err, raftnode.ErrTimeout) {
		t.Fatalf("Apply with a passed deadline = %v, want ErrTimeout", err)
	}
	if got := l.st.Revision(); got != rev {
		t.Fatalf("revision moved from %d to %d after a call that timed out before proposing", rev, got)
	}
}

func TestFollowerRefusesLeaderOnlyCalls(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	for _, f := range c.followers(l) {
		ctx := ctxT(t, 2*time.Second)
		if _, err := f.node.Apply(ctx, store.NewPut("k", []byte("v"), -1, 0)); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: Apply = %v, want ErrNotLeader", f.id, err)
		}
		if _, err := f.node.ReadIndex(ctx); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: ReadIndex = %v, want ErrNotLeader", f.id, err)
		}
		if err := f.node.LeaderRead(ctx); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: LeaderRead = %v, want ErrNotLeader", f.id, err)
		}
		if err := f.node.AddMember(ctx, store.Member{ID: "x", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: AddMember = %v, want ErrNotLeader", f.id, err)
		}
		if err := f.node.RemoveMember(ctx, l.id); !errors.Is(err, raftnode.ErrNotLeader) {
			t.Errorf("%s: RemoveMember = %v, want ErrNotLeader", f.id, err)
		}
		if f.node.IsLeader() {
			t.Errorf("%s: IsLeader on a follower", f.id)
		}
	}
	c.waitMembers(t, c.nodes...)
}

func TestReadIndexSeesEarlierWrites(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	var last int64
	for i := 0; i < 10; i++ {
		last = c.put(t, fmt.Sprintf("k%02d", i), fmt.Sprint(i))
	}
	ctx := ctxT(t, 5*time.Second)
	idx, err := l.node.ReadIndex(ctx)
	if err != nil {
		t.Fatalf("ReadIndex: %v", err)
	}
	if idx == 0 {
		t.Fatal("ReadIndex returned index 0 after writes")
	}
	if err := l.node.WaitApplied(ctx, idx); err != nil {
		t.Fatalf("WaitApplied(%d): %v", idx, err)
	}
	if rev := l.st.Revision(); rev < last {
		t.Fatalf("after ReadIndex+WaitApplied the revision is %d, want >= %d", rev, last)
	}
	kv, _, err := l.st.Get("k09")
	if err != nil || string(kv.Value) != "9" {
		t.Fatalf("Get(k09) = %+v, %v", kv, err)
	}
	if err := l.node.LeaderRead(ctx); err != nil {
		t.Fatalf("LeaderRead on the leader: %v", err)
	}

	// A follower that is handed the leader's read index can serve the
	// read once it has applied it.
	for _, f := range c.followers(l) {
		if err := f.node.WaitApplied(ctx, idx); err != nil {
			t.Fatalf("%s: WaitApplied(%d): %v", f.id, idx, err)
		}
		if rev := f.st.Revision(); rev < last {
			t.Errorf("%s: revision %d after WaitApplied(%d), want >= %d", f.id, rev, idx, last)
		}
	}

	// WaitApplied of an index far ahead ends with the context.
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.node.WaitApplied(short, idx+1_000_000); !errors.Is(err, raftnode.ErrTimeout) {
		t.Fatalf("WaitApplied far ahead = %v, want ErrTimeout", err)
	}
}

func TestConcurrentReadIndex(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	rev := c.put(t, "k", "v")
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
			idx, err := l.node.ReadIndex(ctx)
			if err == nil {
				err = l.node.WaitApplied(ctx, idx)
			}
			if err == nil && l.st.Revision() < rev {
				err = fmt.Errorf("revision %d after read index %d, want >= %d", l.st.Revision(), idx, rev)
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
	c := mustNewCluster(t, 3, clusterOptions{Heartbeat: 1500 * time.Millisecond, Election: 1500 * time.Millisecond, Lease: 500 * time.Millisecond})
	old := c.leader(t)
	rev := c.put(t, "before", "1")
	waitRevision(t, rev, c.nodes...)

	start := time.Now()
	c.stop(old)
	rest := c.running()
	nl := c.leaderAmong(t, 5*time.Second, rest...)
	took := time.Since(start)
	t.Logf("new leader %s %v after shutdown of %s began", nl.id, took, old.id)
	if took > 1200*time.Millisecond {
		t.Errorf("new leader took %v; with a 1.5s heartbeat timeout that is an election, not a transfer", took)
	}

	// The two remaining nodes still make a quorum and accept writes.
	for i := 0; i < 3; i++ {
		rev = c.put(t, fmt.Sprintf("after%d", i), "2")
	}
	waitRevision(t, rev, rest...)
	for _, tn := range rest {
		if kv, _, err := tn.st.Get("after2"); err != nil || string(kv.Value) != "2" {
			t.Errorf("%s: Get(after2) = %+v, %v", tn.id, kv, err)
		}
	}

	// Calls on the stopped node fail cleanly.
	if _, err := old.node.Apply(ctxT(t, time.Second), store.NewPut("k", nil, -1, 0)); !errors.Is(err, raftnode.ErrShutdown) {
		t.Errorf("Apply after Shutdown = %v, want ErrShutdown", err)
	}
	if err := old.node.Shutdown(); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestRestartRejoinsWithoutReapplying(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	for i := 0; i < 5; i++ {
		c.put(t, "k", fmt.Sprint(i))
	}
	rev := c.put(t, "other", "x")
	waitRevision(t, rev, c.nodes...)
	l := c.leader(t)

	for _, tn := range []*testNode{c.followers(l)[0], l} {
		t.Run("restart "+tn.id, func(t *testing.T) {
			before := tn.st.Revision()
			kvBefore, _, _ := tn.st.Get("k")
			c.stop(tn)
			appliedBefore := func() uint64 {
				st, err := tn.openStore()
				if err != nil {
					t.Fatalf("reopen store: %v", err)
				}
				defer st.Close()
				return st.AppliedIndex()
			}()
			c.mustStart(tn)
			if got := tn.st.AppliedIndex(); got != appliedBefore {
				t.Fatalf("applied index on reopen = %d, want %d", got, appliedBefore)
			}
			c.waitMembers(t, c.nodes...)
			if got := tn.st.Revision(); got != before {
				t.Fatalf("revision after restart = %d, want %d (entries re-applied?)", got, before)
			}
			kv, _, err := tn.st.Get("k")
			if err != nil || kv.Version != kvBefore.Version || kv.ModRevision != kvBefore.ModRevision {
				t.Fatalf("after restart Get(k) = %+v, %v; before %+v", kv, err, kvBefore)
			}

			// New writes reach it and move its applied index on.
			rev := c.put(t, "after-"+tn.id, "y")
			waitRevision(t, rev, c.nodes...)
			if got := tn.st.AppliedIndex(); got <= appliedBefore {
				t.Fatalf("applied index %d did not move past %d", got, appliedBefore)
			}
			if rev != before+1 {
				t.Fatalf("first write after restart has revision %d, want %d", rev, before+1)
			}
		})
	}
}

func TestRestartWithNewAddressesUpdatesInPlace(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	fs := c.followers(l)
	t.Run("raft address", func(t *testing.T) {
		f := fs[0]
		c.stop(f)
		f.raftAddr = freeAddr(t)
		c.mustStart(f)
		c.waitMembers(t, c.nodes...)
		rev := c.put(t, "moved", "yes")
		waitRevision(t, rev, f)
	})
	t.Run("http address", func(t *testing.T) {
		f := fs[1]
		c.stop(f)
		f.httpAddr = freeAddr(t)
		c.mustStart(f)
		// Every node learns the new address (through the log), so
		// forwarding to it works should it lead.
		c.waitMembers(t, c.nodes...)
		rev := c.put(t, "moved-http", "yes")
		waitRevision(t, rev, f)
	})
}

func TestRemoveMember(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	ctx := ctxT(t, 5*time.Second)

	err := l.node.RemoveMember(ctx, "nobody")
	if !errors.Is(err, raftnode.ErrUnknownMember) {
		t.Fatalf("RemoveMember(nobody) = %v, want ErrUnknownMember", err)
	}
	c.waitMembers(t, c.nodes...)

	gone := c.followers(l)[0]
	if err := l.node.RemoveMember(ctx, gone.id); err != nil {
		t.Fatalf("RemoveMember(%s): %v", gone.id, err)
	}
	c.stop(gone)
	rest := c.running()
	c.waitMembers(t, rest...)
	waitFor(t, 5*time.Second, "the removed member's addresses to be forgotten", func() error {
		for _, tn := range rest {
			if m, ok := tn.st.Member(gone.id); ok {
				return fmt.Errorf("%s still records %+v", tn.id, m)
			}
		}
		return nil
	})
	rev := c.put(t, "after-remove", "1")
	waitRevision(t, rev, rest...)
}

func TestInitialClusterRegistersEveryNode(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{Initial: true})
	rev := c.put(t, "k", "v")
	waitRevision(t, rev, c.nodes...)
	// Restarting with the same InitialCluster is a no-op bootstrap.
	f := c.followers(c.leader(t))[0]
	c.stop(f)
	c.mustStart(f)
	c.waitMembers(t, c.nodes...)
}

func TestRefusesStoreAheadOfEmptyRaftLog(t *testing.T) {
	c := mustNewCluster(t, 1, clusterOptions{})
	tn := c.nodes[0]
	c.put(t, "k", "v")
	c.stop(tn)
	if err := os.RemoveAll(filepath.Join(tn.dir, "raft")); err != nil {
		t.Fatal(err)
	}
	err := c.start(tn)
	if err == nil {
		t.Fatal("node started with a store at applied index > 0 and an empty raft log")
	}
	t.Logf("start refused: %v", err)
	// The refusal released the Raft port and the log file.
	err2 := c.start(tn)
	if err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second start = %v, want the same refusal %v", err2, err)
	}
}

func TestSnapshotInstallOnNewNode(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{TrailingLogs: 2})
	const n = 40
	var rev int64
	for i := 0; i < n; i++ {
		rev = c.put(t, fmt.Sprintf("key/%02d", i), fmt.Sprintf("value %d", i))
	}
	l := c.leader(t)
	waitRevision(t, rev, c.nodes...)
	for _, tn := range c.nodes {
		if err := tn.node.Snapshot(); err != nil {
			t.Fatalf("%s: Snapshot: %v", tn.id, err)
		}
	}
	if st := l.node.Status(); st.LastLogIndex == 0 {
		t.Fatalf("leader status %+v", st)
	}

	nn := c.newNode()
	c.mustStart(nn)
	c.waitMembers(t, c.nodes...)
	waitRevision(t, rev, nn)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("key/%02d", i)
		kv, _, err := nn.st.Get(key)
		if err != nil || string(kv.Value) != fmt.Sprintf("value %d", i) {
			t.Errorf("new node: Get(%s) = %+v, %v", key, kv, err)
		}
	}
	snaps, err := os.ReadDir(filepath.Join(nn.dir, "raft", "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("new node has no installed snapshot (%v): %v", snaps, err)
	}
	// It keeps following after the install.
	rev = c.put(t, "after-install", "1")
	waitRevision(t, rev, nn)
}
