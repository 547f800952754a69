package raftnode_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A node that joins a cluster with data must not call itself ready before
// it has caught up with what the cluster had committed. Here the data
// reaches it by snapshot install (the log was compacted), which leaves a
// window between first hearing from the leader and catching up.
func TestReadyOnlyAfterCatchingUp(t *testing.T) {
	c := mustNewCluster(t, 3, clusterOptions{TrailingLogs: 2})
	value := strings.Repeat("v", 4096)
	var rev int64
	for i := 0; i < 50; i++ {
		rev = c.put(t, fmt.Sprintf("bulk/%03d", i), value)
	}
	waitRevision(t, rev, c.nodes...)
	for _, tn := range c.nodes {
		if err := tn.node.Snapshot(); err != nil {
			t.Fatalf("%s: Snapshot: %v", tn.id, err)
		}
	}

	nn := c.newNode()
	c.mustStart(nn)
	deadline := time.Now().Add(15 * time.Second)
	for !nn.node.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the new node never became ready")
		}
		time.Sleep(100 * time.Microsecond)
	}
	if got := nn.st.Revision(); got < rev {
		st := nn.node.Status()
		t.Fatalf("Ready() = true while the store is at revision %d of %d (applied index %d, commit index %d, leader %q)",
			got, rev, st.AppliedIndex, st.CommitIndex, st.LeaderID)
	}
	c.waitMembers(t, c.nodes...)
}
