package raftnode_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/inproc"
)

// A node that joins a cluster with data must not call itself ready before
// it has caught up with what the cluster had committed. Here the data
// reaches it by snapshot install (the log was compacted), which leaves a
// window between first hearing from the leader and catching up.
func TestReadyOnlyAfterCatchingUp(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{TrailingLogs: 2})
	value := strings.Repeat("v", 4096)
	var rev int64
	for i := 0; i < 50; i++ {
		rev = c.Put(t, fmt.Sprintf("bulk/%03d", i), value)
	}
	inproc.WaitRevision(t, rev, c.Nodes...)
	for _, tn := range c.Nodes {
		if err := tn.Raft.Snapshot(); err != nil {
			t.Fatalf("%s: Snapshot: %v", tn.ID, err)
		}
	}

	nn := c.AddNode()
	c.MustStart(nn)
	deadline := time.Now().Add(15 * time.Second)
	for !nn.Raft.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the new node never became ready")
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := nn.Store.Revision(); got < rev {
		st := nn.Raft.Status()
		t.Fatalf("Ready() = true while the store is at revision %d of %d (applied index %d, commit index %d, leader %q)",
			got, rev, st.AppliedIndex, st.CommitIndex, st.LeaderID)
	}
	c.WaitMembers(t, c.Nodes...)
}
