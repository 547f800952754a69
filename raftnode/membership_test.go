package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
	"github.com/cairn-kv/cairn/tests/inproc"
)

func TestRemoveLeaderItself(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	if err := l.Raft.RemoveMember(inproc.Context(t, 5*time.Second), l.ID); err != nil {
		t.Fatalf("RemoveMember(leader %s): %v", l.ID, err)
	}
	c.Stop(l)
	rest := c.Running()
	c.WaitMembers(t, rest...)
	rev := c.Put(t, "after", "1")
	inproc.WaitRevision(t, rev, rest...)
}

// Removing the only voter would leave a cluster that can never elect a
// leader again; it must be refused and change nothing.
func TestRemoveLastVoterIsRefused(t *testing.T) {
	c := inproc.Start(t, 1, inproc.Options{})
	l := c.Leader(t)
	err := l.Raft.RemoveMember(inproc.Context(t, 5*time.Second), l.ID)
	if err == nil {
		t.Fatal("RemoveMember of the last voter succeeded")
	}
	t.Logf("RemoveMember(last voter) = %v", err)
	c.WaitMembers(t, l)
	c.Put(t, "still", "works")
}

// AddMember is reached from POST /v1/cluster/members with whatever a
// client sends. A member that no node could ever be (an address without a
// port, with a scheme, an ID New would refuse) must be refused before it
// becomes a voter: a voter that never answers costs the cluster its
// fault tolerance, and in a one-node cluster its quorum.
func TestAddMemberRejectsMalformedMember(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	tests := []struct {
		name string
		m    store.Member
	}{
		{"raft address without port", store.Member{ID: "x1", RaftAddr: "not-an-address", HTTPAddr: "127.0.0.1:1"}},
		{"raft address with scheme", store.Member{ID: "x2", RaftAddr: "http://127.0.0.1:1", HTTPAddr: "127.0.0.1:1"}},
		{"raft port 0", store.Member{ID: "x3", RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:1"}},
		{"unspecified raft address", store.Member{ID: "x4", RaftAddr: "0.0.0.0:7", HTTPAddr: "127.0.0.1:1"}},
		{"http address without port", store.Member{ID: "x5", RaftAddr: "127.0.0.1:7", HTTPAddr: "nowhere"}},
		{"ID with a space", store.Member{ID: "x 6", RaftAddr: "127.0.0.1:7", HTTPAddr: "127.0.0.1:1"}},
		{"ID with a slash", store.Member{ID: "x/7", RaftAddr: "127.0.0.1:7", HTTPAddr: "127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := c.Leader(t)
			err := l.Raft.AddMember(inproc.Context(t, 5*time.Second), tt.m)
			if err == nil {
				t.Errorf("AddMember(%+v) = nil, want an error", tt.m)
				// Undo, so that the next case starts from three members.
				if err := l.Raft.RemoveMember(inproc.Context(t, 5*time.Second), tt.m.ID); err != nil {
					t.Fatalf("undo: RemoveMember(%q): %v", tt.m.ID, err)
				}
			}
			c.WaitMembers(t, c.Nodes...)
		})
	}
}

func TestAddMemberIsIdempotent(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	rev := l.Store.Revision()
	for _, tn := range c.Nodes {
		m := store.Member{ID: tn.ID, RaftAddr: tn.RaftAddr, HTTPAddr: tn.HTTPAddr}
		if err := l.Raft.AddMember(inproc.Context(t, 5*time.Second), m); err != nil {
			t.Fatalf("AddMember(%+v) again: %v", m, err)
		}
	}
	c.WaitMembers(t, c.Nodes...)
	if got := l.Store.Revision(); got != rev {
		t.Fatalf("re-adding members moved the revision from %d to %d", rev, got)
	}
	if err := l.Raft.AddMember(inproc.Context(t, time.Second), store.Member{ID: "x"}); err == nil {
		t.Fatal("AddMember without addresses succeeded")
	}
}

func TestRestartRebuildsLostStore(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{TrailingLogs: 2})
	for i := 0; i < 10; i++ {
		c.Put(t, fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	l := c.Leader(t)
	f := c.Followers(l)[0]
	inproc.WaitRevision(t, 10, f)
	if err := f.Raft.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	rev := c.Put(t, "after-snapshot", "x")
	inproc.WaitRevision(t, rev, c.Nodes...)

	c.Stop(f)
	if err := store.Remove(filepath.Join(f.Dir, "fsm.db")); err != nil {
		t.Fatal(err)
	}
	c.MustStart(f)
	inproc.WaitRevision(t, rev, f)
	for i := 0; i < 10; i++ {
		kv, _, err := f.Store.Get(fmt.Sprintf("k%d", i))
		if err != nil || string(kv.Value) != fmt.Sprint(i) || kv.Version != 1 {
			t.Errorf("rebuilt store: Get(k%d) = %+v, %v", i, kv, err)
		}
	}
	c.WaitMembers(t, c.Nodes...)
}

func TestFullClusterRestart(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	rev := c.Put(t, "k", "v")
	inproc.WaitRevision(t, rev, c.Nodes...)
	c.StopAll()
	for _, tn := range c.Nodes {
		c.MustStart(tn)
	}
	c.WaitMembers(t, c.Nodes...)
	for _, tn := range c.Nodes {
		if got := tn.Store.Revision(); got != rev {
			t.Errorf("%s: revision %d after restart, want %d", tn.ID, got, rev)
		}
	}
	if rev2 := c.Put(t, "k", "v2"); rev2 != rev+1 {
		t.Fatalf("first write after a full restart has revision %d, want %d", rev2, rev+1)
	}
}

// A node whose peers never come up has no leader: leader-only calls fail
// fast and WaitForLeader ends with its context.
func TestNodeWithoutQuorum(t *testing.T) {
	c := inproc.New(t, inproc.Options{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, Lease: 150 * time.Millisecond})
	for i := 0; i < 3; i++ {
		c.AddNode()
	}
	var peers []raftnode.Peer
	for _, tn := range c.Nodes {
		peers = append(peers, raftnode.Peer{ID: tn.ID, RaftAddr: tn.RaftAddr})
	}
	tn := c.Nodes[0]
	tn.Bootstrap, tn.Join, tn.InitialCluster = false, nil, peers
	c.MustStart(tn)

	ctx := inproc.Context(t, 200*time.Millisecond)
	if _, _, err := tn.Raft.WaitForLeader(ctx, 0); !errors.Is(err, raftnode.ErrNoLeader) {
		t.Fatalf("WaitForLeader = %v, want ErrNoLeader", err)
	}
	// The wait bound ends it as well, with a context that never ends.
	start := time.Now()
	if _, _, err := tn.Raft.WaitForLeader(context.Background(), 200*time.Millisecond); !errors.Is(err, raftnode.ErrNoLeader) {
		t.Fatalf("WaitForLeader(wait 200ms) = %v, want ErrNoLeader", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("WaitForLeader(wait 200ms) gave up after %v", took)
	}
	if tn.Raft.Ready() {
		t.Fatal("Ready() without a leader")
	}
	if _, err := tn.Raft.ReadIndex(inproc.Context(t, time.Second)); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("ReadIndex = %v, want ErrNotLeader", err)
	}
	if _, err := tn.Raft.Apply(inproc.Context(t, time.Second), store.NewPut("k", nil, -1, 0)); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("Apply = %v, want ErrNotLeader", err)
	}
	if id, addr := tn.Raft.Leader(); id != "" || addr != "" {
		t.Fatalf("Leader() = %q, %q", id, addr)
	}
}
