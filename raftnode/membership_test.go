package raftnode_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/store"
)

func TestRemoveLeaderItself(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	if err := l.node.RemoveMember(ctxT(t, 5*time.Second), l.id); err != nil {
		t.Fatalf("RemoveMember(leader %s): %v", l.id, err)
	}
	c.stop(l)
	rest := c.running()
	c.waitMembers(t, rest...)
	rev := c.put(t, "after", "1")
	waitRevision(t, rev, rest...)
}

// Removing the only voter would leave a cluster that can never elect a
// leader again; it must be refused and change nothing.
func TestRemoveLastVoterIsRefused(t *testing.T) {
	c := mustNewCluster(t, 1, clusterOptions{})
	l := c.leader(t)
	err := l.node.RemoveMember(ctxT(t, 5*time.Second), l.id)
	if err == nil {
		t.Fatal("RemoveMember of the last voter succeeded")
	}
	t.Logf("RemoveMember(last voter) = %v", err)
	c.waitMembers(t, l)
	c.put(t, "still", "works")
}

// AddMember is reached from POST /v1/cluster/members with whatever a
// client sends. A member that no node could ever be (an address without a
// port, with a scheme, an ID New would refuse) must be refused before it
// becomes a voter: a voter that never answers costs the cluster its
// fault tolerance, and in a one-node cluster its quorum.
func TestAddMemberRejectsMalformedMember(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
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
			l := c.leader(t)
			err := l.node.AddMember(ctxT(t, 5*time.Second), tt.m)
			if err == nil {
				t.Errorf("AddMember(%+v) = nil, want an error", tt.m)
				// Undo, so that the next case starts from three members.
				if err := l.node.RemoveMember(ctxT(t, 5*time.Second), tt.m.ID); err != nil {
					t.Fatalf("undo: RemoveMember(%q): %v", tt.m.ID, err)
				}
			}
			c.waitMembers(t, c.nodes...)
		})
	}
}

func TestAddMemberIsIdempotent(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	rev := l.st.Revision()
	for _, tn := range c.nodes {
		m := store.Member{ID: tn.id, RaftAddr: tn.raftAddr, HTTPAddr: tn.httpAddr}
		if err := l.node.AddMember(ctxT(t, 5*time.Second), m); err != nil {
			t.Fatalf("AddMember(%+v) again: %v", m, err)
		}
	}
	c.waitMembers(t, c.nodes...)
	if got := l.st.Revision(); got != rev {
		t.Fatalf("re-adding members moved the revision from %d to %d", rev, got)
	}
	if err := l.node.AddMember(ctxT(t, time.Second), store.Member{ID: "x"}); err == nil {
		t.Fatal("AddMember without addresses succeeded")
	}
}

func TestRestartRebuildsLostStore(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{TrailingLogs: 2})
	for i := 0; i < 10; i++ {
		c.put(t, fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	l := c.leader(t)
	f := c.followers(l)[0]
	waitRevision(t, 10, f)
	if err := f.node.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	rev := c.put(t, "after-snapshot", "x")
	waitRevision(t, rev, c.nodes...)

	c.stop(f)
	if err := store.Remove(filepath.Join(f.dir, "fsm.db")); err != nil {
		t.Fatal(err)
	}
	c.mustStart(f)
	waitRevision(t, rev, f)
	for i := 0; i < 10; i++ {
		kv, _, err := f.st.Get(fmt.Sprintf("k%d", i))
		if err != nil || string(kv.Value) != fmt.Sprint(i) || kv.Version != 1 {
			t.Errorf("rebuilt store: Get(k%d) = %+v, %v", i, kv, err)
		}
	}
	c.waitMembers(t, c.nodes...)
}

func TestFullClusterRestart(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{})
	rev := c.put(t, "k", "v")
	waitRevision(t, rev, c.nodes...)
	c.stopAll()
	for _, tn := range c.nodes {
		c.mustStart(tn)
	}
	c.waitMembers(t, c.nodes...)
	for _, tn := range c.nodes {
		if got := tn.st.Revision(); got != rev {
			t.Errorf("%s: revision %d after restart, want %d", tn.id, got, rev)
		}
	}
	if rev2 := c.put(t, "k", "v2"); rev2 != rev+1 {
		t.Fatalf("first write after a full restart has revision %d, want %d", rev2, rev+1)
	}
}

// A node whose peers never come up has no leader: leader-only calls fail
// fast and WaitForLeader ends with its context.
func TestNodeWithoutQuorum(t *testing.T) {
	c := &testCluster{t: t, log: testLogger(t), opts: clusterOptions{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, Lease: 150 * time.Millisecond}}
	t.TempDir()
	t.Cleanup(c.stopAll)
	for i := 0; i < 3; i++ {
		c.newNode()
	}
	var peers []raftnode.Peer
	for _, tn := range c.nodes {
		peers = append(peers, raftnode.Peer{ID: tn.id, RaftAddr: tn.raftAddr})
	}
	tn := c.nodes[0]
	tn.boot, tn.join, tn.initial = false, nil, peers
	c.mustStart(tn)

	ctx := ctxT(t, 200*time.Millisecond)
	if _, _, err := tn.node.WaitForLeader(ctx); !errors.Is(err, raftnode.ErrNoLeader) {
		t.Fatalf("WaitForLeader = %v, want ErrNoLeader", err)
	}
	if tn.node.Ready() {
		t.Fatal("Ready() without a leader")
	}
	if _, err := tn.node.ReadIndex(ctxT(t, time.Second)); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("ReadIndex = %v, want ErrNotLeader", err)
	}
	if _, err := tn.node.Apply(ctxT(t, time.Second), store.NewPut("k", nil, -1, 0)); !errors.Is(err, raftnode.ErrNotLeader) {
		t.Fatalf("Apply = %v, want ErrNotLeader", err)
	}
	if id, addr := tn.node.Leader(); id != "" || addr != "" {
		t.Fatalf("Leader() = %q, %q", id, addr)
	}
}
