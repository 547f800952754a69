//go:build linux

package chaos

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// start starts a cluster and its workload.
func start(t *testing.T, opts Options, wopts WorkloadOptions) (Mode, *Cluster, *Workload) {
	t.Helper()
	m := GetMode(t)
	c := Start(t, opts)
	w := c.StartWorkload(t, wopts)
	return m, c, w
}

// TestBaseline runs the workload without faults.
func TestBaseline(t *testing.T) {
	m, c, w := start(t, Options{}, WorkloadOptions{})
	w.Phase("steady")
	Hold(2 * m.Phase)
	if n := w.PhaseWritesOK("steady"); n == 0 {
		t.Errorf("no write acknowledged without any fault")
	}
	Verify(t, c, w, m)
}

// TestKill kills a follower (full matrix only) and then the leader with
// SIGKILL, restarting each.
func TestKill(t *testing.T) {
	m, c, w := start(t, Options{}, WorkloadOptions{})
	w.Phase("before")
	Hold(m.Phase)
	if m.Full {
		f := c.Followers(t)[0]
		must(t, c.Kill(f))
		logf(t, w, "killed follower %s", f.ID)
		w.Phase("follower killed")
		Hold(m.Phase)
		must(t, c.Restart(f))
		logf(t, w, "restarted %s", f.ID)
		w.Phase("follower restarted")
		c.WaitHealthy(t)
		Hold(m.Phase)
	}
	l := c.Leader(t)
	killed := time.Now()
	must(t, c.Kill(l))
	logf(t, w, "killed leader %s", l.ID)
	w.Phase("leader killed")
	nl := c.WaitNewLeader(t, l, nil)
	logf(t, w, "new leader %s after %v", nl.ID, time.Since(killed).Round(time.Millisecond))
	Hold(m.Phase)
	must(t, c.Restart(l))
	logf(t, w, "restarted %s", l.ID)
	w.Phase("old leader restarted")
	Hold(m.Phase)
	if w.PhaseWritesOK("leader killed") == 0 {
		t.Errorf("no write acknowledged while the old leader was down")
	}
	Verify(t, c, w, m)
}

// TestMinorityPartition cuts the leader (and, with five nodes, one
// follower) off from the majority: the old leader must neither
// acknowledge writes nor serve linearizable reads, while the majority
// elects a leader and goes on; then the partition heals.
func TestMinorityPartition(t *testing.T) {
	t.Run("3 nodes", func(t *testing.T) { minorityPartition(t, 3, false) })
	t.Run("5 nodes", func(t *testing.T) {
		RequireFull(t)
		minorityPartition(t, 5, false)
	})
}

// TestNegativeControl runs the minority partition with stale reads: the
// checker must find the history not linearizable, proving that it
// catches real violations. A control client makes it certain: it writes
// through the majority and then reads the key, stale, from the isolated
// old leader.
func TestNegativeControl(t *testing.T) {
	minorityPartition(t, 3, true)
}

func minorityPartition(t *testing.T, nodes int, stale bool) {
	m, c, w := start(t, Options{Nodes: nodes}, WorkloadOptions{Stale: stale})
	ctl := w.Client(w.opts.Clients)
	const ctlKey = "control"

	w.Phase("before")
	Hold(m.Phase)
	l := c.Leader(t)
	// The control key holds v1 on every node, the old leader included.
	v1 := mustWrite(t, ctl, l, Input{Kind: Put, Key: ctlKey, Value: "v1"})
	if !poll(10*time.Second, func() bool {
		out, res := ctl.do(l, Input{Kind: Get, Key: ctlKey}, time.Second, true)
		return res == done && out.Value == v1
	}) {
		t.Fatalf("old leader %s never showed %s", l.ID, v1)
	}

	minority := []*Node{l}
	if nodes == 5 {
		minority = append(minority, c.Others(l)[0])
	}
	majority := c.Others(minority...)
	c.Net.Partition(Link{Blackhole: true}, slots(minority), slots(majority))
	cut := time.Now()
	logf(t, w, "partitioned %v | %v (%s)", ids(minority), ids(majority), c.Net.Describe())
	w.Phase("partitioned")

	// Right away, while the old leader may still believe it leads, and
	// again once the majority has a new leader: no write acknowledged.
	probe := make(chan string, 1)
	go func() { probe <- probeWrite(c, l, "probe-1") }()
	nl := c.WaitNewLeader(t, l, majority)
	logf(t, w, "majority elected %s after %v", nl.ID, time.Since(cut).Round(time.Millisecond))
	if r := <-probe; r == "200" {
		t.Errorf("old leader %s acknowledged a write sent just after it was cut off", l.ID)
	} else {
		logf(t, w, "write to the old leader just after the cut: %s", r)
	}
	// Once the majority has a new leader, probe the old one again (a write
	// and a linearizable read) while the load runs on.
	probe2 := make(chan string, 1)
	go func() { probe2 <- probeWrite(c, l, "probe-2") }()
	type readResult struct {
		out Output
		res outcome
	}
	read := make(chan readResult, 1)
	// The majority goes on.
	mustWrite(t, ctl, nl, Input{Kind: Put, Key: ctlKey, Value: "v2"})
	go func() {
		out, res := ctl.do(l, Input{Kind: Get, Key: ctlKey}, 3*time.Second, stale)
		read <- readResult{out, res}
	}()
	Hold(m.Phase)
	if r := <-probe2; r == "200" {
		t.Errorf("old leader %s acknowledged a write in the minority", l.ID)
	} else {
		logf(t, w, "write to the old leader in the minority: %s", r)
	}
	switch r := <-read; {
	case stale && (r.res != done || r.out.Value != v1):
		t.Fatalf("negative control: a stale read of the old leader gave %s (outcome %v), want %s; the scenario is not deterministic",
			describe(Input{Kind: Get, Key: ctlKey}, r.out), r.res, v1)
	case !stale && r.res == done:
		t.Errorf("old leader %s served a linearizable read in the minority: %s", l.ID, describe(Input{Kind: Get, Key: ctlKey}, r.out))
	case stale:
		logf(t, w, "stale read from the old leader in the minority: %s", describe(Input{Kind: Get, Key: ctlKey}, r.out))
	default:
		logf(t, w, "linearizable read from the old leader in the minority failed, as it must")
	}
	if w.PhaseWritesOK("partitioned") == 0 {
		t.Errorf("the majority acknowledged no write during the partition")
	}

	c.Net.Heal()
	logf(t, w, "healed")
	w.Phase("healed")
	c.WaitHealthy(t)
	Hold(m.Phase)

	if !stale {
		Verify(t, c, w, m)
		return
	}
	// The negative control: everything else must hold, but the checker
	// must reject the history.
	w.Stop()
	c.WaitHealthy(t)
	c.WaitConverged(t)
	w.FinalReads(t, w.opts.Clients+1, c.opts.WaitTimeout)
	for _, line := range w.Availability() {
		t.Logf("availability: %s", line)
	}
	res2, info, problems := Check(w.History(), m.CheckTimeout)
	t.Logf("linearizability of the history with stale reads: %s (contradictions: %v)", res2, problems)
	if res2 != porcupine.Illegal {
		t.Errorf("the checker did not catch the stale read: %s", res2)
	}
	path := t.TempDir() + "/linearizability.html"
	if err := porcupine.VisualizePath(Model.ToModel(), info, path); err != nil {
		t.Errorf("visualize: %v", err)
	}
}

// probeWrite sends one PUT to n and returns its status (or error).
func probeWrite(c *Cluster, n *Node, key string) string {
	r, err := c.do(n, http.MethodPut, "/v1/kv/"+key, []byte("must not be acknowledged"), 6*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	return r.String()
}

// mustWrite retries a write through n until it is acknowledged (every
// attempt is recorded, each with its own value: in.Value plus a suffix).
// It returns the value acknowledged.
func mustWrite(t *testing.T, cl *Client, n *Node, in Input) string {
	t.Helper()
	base := in.Value
	attempt := 0
	var out Output
	if !poll(20*time.Second, func() bool {
		attempt++
		in.Value = fmt.Sprintf("%s-%d", base, attempt)
		var res outcome
		out, res = cl.do(n, in, 3*time.Second, false)
		return res == done
	}) {
		t.Fatalf("write %s through %s never acknowledged", describe(in, out), n.ID)
	}
	return in.Value
}

func slots(nodes []*Node) []int {
	var out []int
	for _, n := range nodes {
		out = append(out, n.Slot)
	}
	return out
}

func ids(nodes []*Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
