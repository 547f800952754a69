package cluster_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-kv/cairn/tests/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// TestHarness drives every process-control method once and checks that
// cleanup leaves no process behind.
func TestHarness(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := cluster.Start(t, 3)
		for _, n := range c.Nodes() {
			if !strings.HasPrefix(n.HTTPAddr, "127.0.0.1:") || !strings.HasPrefix(n.RaftAddr, "127.0.0.1:") {
				t.Errorf("%s: addresses %s %s not on 127.0.0.1", n.ID, n.HTTPAddr, n.RaftAddr)
			}
			if c.URL(n.ID) != "http://"+n.HTTPAddr || c.HTTPAddr(n.ID) != n.HTTPAddr {
				t.Errorf("%s: URL %s HTTPAddr %s", n.ID, c.URL(n.ID), c.HTTPAddr(n.ID))
			}
		}
		leader := c.Leader(t)
		fs := c.Followers(t)
		if len(fs) != 2 {
			t.Fatalf("%d followers, want 2", len(fs))
		}
		f := fs[0]

		if err := c.Pause(f.ID); err != nil {
			t.Fatal(err)
		}
		if !f.Paused() || len(c.Live()) != 2 {
			t.Errorf("after Pause: paused %v, %d live", f.Paused(), len(c.Live()))
		}
		if got := c.Leader(t); got != leader {
			t.Errorf("leader %s while a follower is paused, want %s", got.ID, leader.ID)
		}
		if err := c.Resume(f.ID); err != nil {
			t.Fatal(err)
		}

		if err := c.Kill(f.ID); err != nil {
			t.Fatal(err)
		}
		if f.Running() {
			t.Errorf("%s running after Kill", f.ID)
		}
		if err := c.Kill(f.ID); err == nil {
			t.Errorf("second Kill: %v, want an error", err)
		}
		if err := c.Restart(f.ID); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(f.ID); err == nil {
			t.Errorf("Restart of a running node: no error")
		}
		if err := c.Stop(fs[1].ID); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if err := c.Restart(fs[1].ID); err != nil {
			t.Fatal(err)
		}
		// SIGTERM reaches a paused node too (it is resumed for it).
		if err := c.Pause(f.ID); err != nil {
			t.Fatal(err)
		}
		if err := c.Stop(f.ID); err != nil {
			t.Errorf("Stop of a paused node: %v", err)
		}
		if err := c.Restart(f.ID); err != nil {
			t.Fatal(err)
		}
		c.Leader(t)
		c.WaitConverged(t)
		if _, ok := f.LogContains("cluster: start #3"); !ok {
			t.Errorf("%s log has no restart marker", f.ID)
		}
		// A paused node is still cleaned up.
		if err := c.Pause(fs[1].ID); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes() {
			pids = append(pids, n.Pid())
		}
	})
	for _, pid := range pids {
		if pid == 0 {
			t.Errorf("a node was not running at the end")
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after cleanup (kill -0: %v)", pid, err)
		}
	}
}
