package tests

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/cluster"
)

// TestWriteThroughFollower writes through a follower and reads the value
// back from every node, at once with the linearizable consistencies and
// after convergence with stale reads.
func TestWriteThroughFollower(t *testing.T) {
	c := cluster.Start(t, 3)
	leader := c.Leader(t)
	follower := c.Followers(t)[0]

	key, value := "walk/through-follower", "hello from "+follower.ID
	r, rev := putOK(t, follower, key, value)
	if got := headerInt(t, r, hRevision); got != rev {
		t.Errorf("forwarded PUT: %s %d, body revision %d", hRevision, got, rev)
	}
	if got := r.Header.Get(hNode); got != leader.ID {
		t.Errorf("forwarded PUT: %s %q, want the leader %q", hNode, got, leader.ID)
	}

	for _, q := range [][]string{nil, {"consistency=linearizable"}, {"consistency=leader"}} {
		for _, n := range c.Nodes() {
			r, err := n.HTTP().Get(key, q...)
			must(t, err)
			if r.Status != http.StatusOK || string(r.Body) != value {
				t.Errorf("GET %s via %s %v: got %s, want 200 %q", key, n.ID, q, r, value)
				continue
			}
			if got := headerInt(t, r, hModRevision); got != rev {
				t.Errorf("GET via %s %v: %s %d, want %d", n.ID, q, hModRevision, got, rev)
			}
			if got := headerInt(t, r, hCreateRevision); got != rev {
				t.Errorf("GET via %s %v: %s %d, want %d", n.ID, q, hCreateRevision, got, rev)
			}
			if got := headerInt(t, r, hVersion); got != 1 {
				t.Errorf("GET via %s %v: %s %d, want 1", n.ID, q, hVersion, got)
			}
			if got := headerInt(t, r, hRevision); got < rev {
				t.Errorf("GET via %s %v: %s %d, want >= %d", n.ID, q, hRevision, got, rev)
			}
		}
	}

	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		r, err := n.HTTP().Get(key, "consistency=stale")
		must(t, err)
		if r.Status != http.StatusOK || string(r.Body) != value {
			t.Errorf("stale GET via %s: got %s, want 200 %q", n.ID, r, value)
		}
		if got := r.Header.Get(hNode); got != n.ID {
			t.Errorf("stale GET via %s: %s %q, want the node itself", n.ID, hNode, got)
		}
	}

	// Read-your-writes across nodes: each write is visible at once to a
	// default read on another node.
	nodes := c.Nodes()
	last := rev
	for i := range 12 {
		w, rd := nodes[i%3], nodes[(i+1)%3]
		v := fmt.Sprintf("round %d via %s", i, w.ID)
		_, rev := putOK(t, w, key, v)
		if rev <= last {
			t.Errorf("write %d: revision %d not above the previous %d", i, rev, last)
		}
		last = rev
		r, err := rd.HTTP().Get(key)
		must(t, err)
		if r.Status != http.StatusOK || string(r.Body) != v {
			t.Errorf("round %d: GET via %s right after PUT via %s: got %s, want %q", i, rd.ID, w.ID, r, v)
		}
		if got, _ := r.HeaderInt(hModRevision); got != rev {
			t.Errorf("round %d: %s %d, want %d", i, hModRevision, got, rev)
		}
	}

	// A delete through a follower is seen everywhere too.
	dr, err := follower.HTTP().Delete(key)
	must(t, err)
	var wr cluster.WriteResult
	if dr.Status != http.StatusOK || dr.JSON(&wr) != nil || wr.Deleted != 1 || wr.Revision <= last {
		t.Errorf("DELETE via follower: got %s, want 200 deleted 1 revision > %d", dr, last)
	}
	for _, n := range c.Nodes() {
		checkAbsent(t, n, key)
	}
}

// TestLeaderKill kills the leader with SIGKILL: a new leader must be
// elected within 3 s, the survivors take writes, and the killed node
// catches up once restarted.
func TestLeaderKill(t *testing.T) {
	c := cluster.Start(t, 3)
	old := c.Leader(t)
	count := 200
	if testing.Short() {
		count = 50
	}
	want := writeKeys(t, c.Nodes(), "kill/before/", count, 8)

	must(t, c.Kill(old.ID))
	start := time.Now()
	nl := c.WaitForNewLeader(t, old.ID)
	elapsed := time.Since(start)
	t.Logf("new leader %s %v after SIGKILL of %s", nl.ID, elapsed, old.ID)
	if elapsed >= 3*time.Second {
		t.Errorf("new leader after %v, want < 3s", elapsed)
	}

	survivors := c.Live()
	if len(survivors) != 2 {
		t.Fatalf("%d live nodes after the kill, want 2", len(survivors))
	}
	maps.Copy(want, writeKeys(t, survivors, "kill/after/", count, 8))
	for _, n := range survivors {
		checkKeys(t, n, want, "")
	}

	must(t, c.Restart(old.ID))
	c.Leader(t)
	c.WaitConverged(t)
	checkKeys(t, old, want, old.ID, "consistency=stale")
	checkKeys(t, old, want, "")
}

// TestRestartAll stops all three nodes (SIGKILL, and SIGTERM) and starts
// them again: every acknowledged write and delete is still there.
func TestRestartAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(c *cluster.Cluster, id string) error
	}{
		{"SIGKILL", (*cluster.Cluster).Kill},
		{"SIGTERM", (*cluster.Cluster).Stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster.Start(t, 3)
			count := 300
			if testing.Short() {
				count = 100
			}
			want := writeKeys(t, c.Nodes(), "restart/", count, 16)
			var deleted []string
			for i := 0; i < count; i += 30 {
				key := fmt.Sprintf("restart/%05d", i)
				r, err := c.Nodes()[i%3].HTTP().Delete(key)
				must(t, err)
				var wr cluster.WriteResult
				if r.Status != http.StatusOK || r.JSON(&wr) != nil || wr.Deleted != 1 {
					t.Fatalf("DELETE %s: got %s, want 200 deleted 1", key, r)
				}
				delete(want, key)
				deleted = append(deleted, key)
			}
			_, lastRev := putOK(t, c.Nodes()[0], "restart/last", "last")
			want["restart/last"] = "last"

			// Leader first, so a clean shutdown has to hand leadership on.
			order := []*cluster.Node{c.Leader(t)}
			order = append(order, c.Followers(t)...)
			for _, n := range order {
				must(t, tc.stop(c, n.ID))
			}
			for _, n := range c.Nodes() {
				if n.Running() {
					t.Fatalf("%s still running after %s", n.ID, tc.name)
				}
			}
			for _, n := range c.Nodes() {
				must(t, c.Restart(n.ID))
			}
			leader := c.Leader(t)
			c.WaitConverged(t)

			for _, n := range c.Nodes() {
				checkKeys(t, n, want, "")
				checkKeys(t, n, want, n.ID, "consistency=stale")
				for _, key := range deleted {
					checkAbsent(t, n, key)
				}
			}
			_, rev := putOK(t, leader, "restart/after", "after")
			if rev <= lastRev {
				t.Errorf("revision %d after the restart, want > %d (the last one before)", rev, lastRev)
			}
		})
	}
}

// TestJoinAfterSnapshot adds a fourth node after enough writes that the
// log was compacted, so it must catch up from a snapshot.
func TestJoinAfterSnapshot(t *testing.T) {
	count := 10000
	if testing.Short() {
		count = 2000
	}
	c := cluster.Start(t, 3,
		cluster.WithFlags("--snapshot-threshold", "1000", "--trailing-logs", "100", "--snapshot-interval", "1s",
			"--raft-log-level", "info"),
		cluster.WithWaitTimeout(60*time.Second))
	leader := c.Leader(t)

	start := time.Now()
	want := writeKeys(t, []*cluster.Node{leader}, "snap/", count, 32)
	t.Logf("%d writes in %v", count, time.Since(start))
	target := c.WaitConverged(t)

	// With far more entries than the threshold, the leader snapshots
	// and compacts its log within a snapshot interval or two; wait for
	// hashicorp/raft's info line saying so, so the new node cannot catch
	// up from the log alone.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if line, ok := leader.LogContains("snapshot complete up to"); ok {
			t.Logf("leader log: %s", line)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader %s logged no \"snapshot complete up to\" within 15s of %d writes (--snapshot-threshold 1000 --snapshot-interval 1s)", leader.ID, count)
		}
		time.Sleep(100 * time.Millisecond)
	}

	n4 := c.AddNode(t)
	s := c.WaitApplied(t, n4.ID, target)
	t.Logf("%s applied %d (leader had %d) %v after the writes", n4.ID, s.AppliedIndex, target, time.Since(start))
	c.WaitConverged(t)
	checkKeys(t, n4, want, n4.ID, "consistency=stale")

	// hashicorp/raft logs this at info level (hence --raft-log-level
	// info); without it the node caught up from the log and the test did
	// not test what it is for.
	if line, ok := n4.LogContains("installed remote snapshot"); ok {
		t.Logf("%s log: %s", n4.ID, line)
	} else {
		t.Errorf("%s log has no \"Installed remote snapshot\" line: it did not catch up through a snapshot", n4.ID)
	}

	// The new member is a full member: it is listed and takes writes.
	putOK(t, n4, "snap/after-join", "x")
	r, err := leader.HTTP().Get("snap/after-join")
	must(t, err)
	if r.Status != http.StatusOK || string(r.Body) != "x" {
		t.Errorf("GET of a write through %s: got %s", n4.ID, r)
	}
}

// TestBadRequests sends invalid requests to the leader and to a follower:
// each gets its documented JSON error and none changes the store.
func TestBadRequests(t *testing.T) {
	c := cluster.Start(t, 3)
	leader := c.Leader(t)
	follower := c.Followers(t)[0]

	// The limits themselves are allowed.
	key1024 := strings.Repeat("k", 1024)
	putOK(t, follower, key1024, "at the key limit")
	mib := bytes.Repeat([]byte("v"), 1<<20)
	putOK(t, follower, "bad/one-mib", string(mib))
	r, err := leader.HTTP().Get("bad/one-mib")
	must(t, err)
	if r.Status != http.StatusOK || len(r.Body) != len(mib) {
		t.Errorf("GET of a 1 MiB value: status %d, %d bytes", r.Status, len(r.Body))
	}
	r, err = leader.HTTP().Get(key1024)
	must(t, err)
	if r.Status != http.StatusOK {
		t.Errorf("GET of a 1024-byte key: got %s", r)
	}

	c.WaitConverged(t)
	base := c.Statuses(t)[leader.ID].Revision

	type want struct {
		status int
		code   string
	}
	long := strings.Repeat("k", 1025)
	tooBig := bytes.Repeat([]byte("v"), 1<<20+1)
	cases := []struct {
		name, method, path string
		body               []byte
		want               []want // any one of them
	}{
		{"NUL in key PUT", "PUT", "/v1/kv/a%00b", []byte("v"), []want{{400, "invalid_key"}}},
		{"NUL in key GET", "GET", "/v1/kv/a%00b", nil, []want{{400, "invalid_key"}}},
		{"NUL in key DELETE", "DELETE", "/v1/kv/a%00b", nil, []want{{400, "invalid_key"}}},
		{"key over 1024 bytes PUT", "PUT", "/v1/kv/" + long, []byte("v"), []want{{400, "invalid_key"}}},
		{"key over 1024 bytes GET", "GET", "/v1/kv/" + long, nil, []want{{400, "invalid_key"}}},
		{"invalid UTF-8 PUT", "PUT", "/v1/kv/%FF", []byte("v"), []want{{400, "invalid_key"}}},
		{"invalid UTF-8 nested PUT", "PUT", "/v1/kv/dir/a%C3%28", []byte("v"), []want{{400, "invalid_key"}}},
		{"invalid UTF-8 GET", "GET", "/v1/kv/%FF", nil, []want{{400, "invalid_key"}}},
		{"invalid UTF-8 DELETE", "DELETE", "/v1/kv/x%FFy", nil, []want{{400, "invalid_key"}}},
		{"empty key PUT", "PUT", "/v1/kv/", []byte("v"), []want{{400, "invalid_key"}, {405, "method_not_allowed"}}},
		{"value over 1 MiB", "PUT", "/v1/kv/bad/too-big", tooBig, []want{{413, "too_large"}}},
		{"limit not a number", "GET", "/v1/kv/?prefix=bad/&limit=abc", nil, []want{{400, "invalid_argument"}}},
		{"negative limit", "GET", "/v1/kv/?prefix=bad/&limit=-1", nil, []want{{400, "invalid_argument"}}},
		{"unknown consistency", "GET", "/v1/kv/bad/one-mib?consistency=bogus", nil, []want{{400, "invalid_argument"}}},
		{"unknown consistency on a list", "GET", "/v1/kv/?prefix=bad/&consistency=sometimes", nil, []want{{400, "invalid_argument"}}},
		{"member JSON cut short", "POST", "/v1/cluster/members", []byte(`{"id": "n9", "raft_addr": `), []want{{400, "malformed_json"}}},
		{"member JSON not an object", "POST", "/v1/cluster/members", []byte(`[1, 2]`), []want{{400, "malformed_json"}}},
		{"member JSON unknown field", "POST", "/v1/cluster/members",
			[]byte(`{"id": "n9", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "colour": "red"}`),
			[]want{{400, "malformed_json"}}},
		{"unknown path under v1", "GET", "/v1/nosuch", nil, []want{{404, "not_found"}}},
		{"unknown top path", "GET", "/nosuch", nil, []want{{404, "not_found"}}},
		{"unknown API version", "PUT", "/v2/kv/a", []byte("v"), []want{{404, "not_found"}}},
		{"POST to a key", "POST", "/v1/kv/bad/x", []byte("v"), []want{{405, "method_not_allowed"}}},
		{"PATCH to a key", "PATCH", "/v1/kv/bad/x", []byte("v"), []want{{405, "method_not_allowed"}}},
		{"PUT to status", "PUT", "/v1/status", []byte("{}"), []want{{405, "method_not_allowed"}}},
		{"PUT to members", "PUT", "/v1/cluster/members", []byte("{}"), []want{{405, "method_not_allowed"}}},
		{"POST to healthz", "POST", "/healthz", nil, []want{{405, "method_not_allowed"}}},
		{"DELETE to readyz", "DELETE", "/readyz", nil, []want{{405, "method_not_allowed"}}},
	}
	for _, via := range []*cluster.Node{leader, follower} {
		role := "leader"
		if via != leader {
			role = "follower"
		}
		t.Run(role, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					r, err := via.HTTP().Do(context.Background(), tc.method, tc.path, tc.body, nil)
					if err != nil {
						t.Fatalf("%s %.80s: %v", tc.method, tc.path, err)
					}
					w := tc.want[0]
					for _, alt := range tc.want {
						if r.Status == alt.status {
							w = alt
						}
					}
					checkError(t, r, w.status, w.code)
					if r.Status == http.StatusMethodNotAllowed && r.Header.Get("Allow") == "" {
						t.Errorf("405 without an Allow header")
					}
				})
			}
		})
	}

	c.WaitConverged(t)
	for id, s := range c.Statuses(t) {
		if s.Revision != base {
			t.Errorf("%s: revision %d after the bad requests, want %d (unchanged)", id, s.Revision, base)
		}
	}
	for _, key := range []string{"bad/too-big", "bad/x", "a"} {
		checkAbsent(t, leader, key)
	}
	ms, err := leader.HTTP().Members(context.Background())
	must(t, err)
	if len(ms) != 3 {
		t.Errorf("%d members after the bad requests, want 3: %+v", len(ms), ms)
	}
}

// TestMembership checks the member list on every node, the health
// endpoints, and that deleting an unknown member is a 404.
func TestMembership(t *testing.T) {
	c := cluster.Start(t, 3)
	leader := c.Leader(t)
	ctx := context.Background()

	checkMembers := func(via *cluster.Node) {
		t.Helper()
		ms, err := via.HTTP().Members(ctx)
		if err != nil {
			t.Errorf("members via %s: %v", via.ID, err)
			return
		}
		if len(ms) != 3 {
			t.Errorf("members via %s: %d, want 3: %+v", via.ID, len(ms), ms)
		}
		leaders := 0
		byID := map[string]cluster.Member{}
		for _, m := range ms {
			byID[m.ID] = m
			if m.Leader {
				leaders++
				if m.ID != leader.ID {
					t.Errorf("members via %s: %s marked leader, status says %s", via.ID, m.ID, leader.ID)
				}
			}
		}
		if leaders != 1 {
			t.Errorf("members via %s: %d leaders, want exactly 1: %+v", via.ID, leaders, ms)
		}
		for _, n := range c.Nodes() {
			m, ok := byID[n.ID]
			if !ok {
				t.Errorf("members via %s: %s missing: %+v", via.ID, n.ID, ms)
				continue
			}
			if m.HTTPAddr != n.HTTPAddr || m.RaftAddr != n.RaftAddr || !m.Voter {
				t.Errorf("members via %s: %+v, want http %s raft %s voter", via.ID, m, n.HTTPAddr, n.RaftAddr)
			}
		}
	}
	// The leader's list is complete once Start returns; a follower serves
	// the list from its own store, so it is checked once all have
	// applied the same entries.
	checkMembers(leader)
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		checkMembers(n)
	}

	for _, n := range c.Nodes() {
		r, err := n.HTTP().Do(ctx, http.MethodDelete, "/v1/cluster/members/nosuch", nil, nil)
		must(t, err)
		checkError(t, r, http.StatusNotFound, "member_not_found")
	}
	checkMembers(leader)

	for _, n := range c.Nodes() {
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
			r, err := n.HTTP().Do(ctx, http.MethodGet, path, nil, nil)
			must(t, err)
			var body struct{ Status string }
			if r.Status != http.StatusOK || r.JSON(&body) != nil || body.Status != want {
				t.Errorf("GET %s via %s: got %s, want 200 {\"status\": %q}", path, n.ID, r, want)
			}
		}
	}
}

// TestInitialCluster forms the cluster with --initial-cluster on every
// node instead of bootstrap and join, and uses it.
func TestInitialCluster(t *testing.T) {
	c := cluster.Start(t, 3, cluster.WithInitialCluster())
	leader := c.Leader(t)
	follower := c.Followers(t)[0]
	r, _ := putOK(t, follower, "initial/a", "x")
	if got := r.Header.Get(hNode); got != leader.ID {
		t.Errorf("forwarded PUT: %s %q, want %q", hNode, got, leader.ID)
	}
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		checkKeys(t, n, map[string]string{"initial/a": "x"}, n.ID, "consistency=stale")
		ms, err := n.HTTP().Members(context.Background())
		must(t, err)
		if len(ms) != 3 {
			t.Errorf("members via %s: %+v, want 3", n.ID, ms)
		}
	}
	// A restarted member of an initial cluster rejoins with its data.
	must(t, c.Kill(follower.ID))
	putOK(t, leader, "initial/b", "y")
	must(t, c.Restart(follower.ID))
	c.Leader(t)
	c.WaitConverged(t)
	checkKeys(t, follower, map[string]string{"initial/a": "x", "initial/b": "y"}, follower.ID, "consistency=stale")
}

// TestLeaderSIGTERM stops the leader with SIGTERM under write load: it
// hands leadership on, so another node leads almost at once, and no
// acknowledged write is lost.
func TestLeaderSIGTERM(t *testing.T) {
	c := cluster.Start(t, 3)
	old := c.Leader(t)
	survivors := c.Followers(t)

	w := startWriter(c.Nodes(), "term/", 6, 20000, 45*time.Second)
	t.Cleanup(w.halt)
	w.waitAcked(t, 100, 20*time.Second)

	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		err := c.Stop(old.ID)
		t.Logf("%s exited %v after SIGTERM", old.ID, time.Since(start))
		stopped <- err
	}()
	newID := waitLeaderAmong(t, survivors, old.ID, 10*time.Second)
	elapsed := time.Since(start)
	t.Logf("%s leads %v after SIGTERM to %s", newID, elapsed, old.ID)
	// An election without a handover waits out a heartbeat timeout (1 s
	// by default); a handover is far quicker.
	if elapsed >= time.Second {
		t.Errorf("new leader %v after SIGTERM of the leader, want < 1s (leadership transfer)", elapsed)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop %s: %v", old.ID, err)
	}
	if line, ok := old.LogContains("transfer"); ok {
		t.Logf("%s log: %s", old.ID, line)
	}

	// Writes go on through the survivors.
	n := w.count.Load()
	w.waitAcked(t, n+100, 20*time.Second)
	acked, failures := w.finish()
	t.Logf("%d writes acknowledged; %s", len(acked), failures)

	leader := c.Node(newID)
	c.WaitConverged(t)
	checkKeys(t, leader, acked, "")
	// A write refused with 503 (or 4xx) was not applied: only 504 and
	// transport errors leave the outcome open.
	for key, kind := range w.refusedKeys() {
		r, err := leader.HTTP().Get(key)
		must(t, err)
		if r.Status != http.StatusNotFound {
			t.Errorf("write of %s was refused with %s, but GET finds it: %s", key, kind, r)
		}
	}
	for _, n := range survivors {
		checkKeys(t, n, acked, n.ID, "consistency=stale")
	}

	must(t, c.Restart(old.ID))
	c.Leader(t)
	c.WaitConverged(t)
	checkKeys(t, old, acked, old.ID, "consistency=stale")
}
