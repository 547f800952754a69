package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/tests/cluster"
)

// newClient returns a Go client whose endpoints are the nodes, in that
// order (the first is tried first), closed when the test ends.
func newClient(t testing.TB, nodes ...*cluster.Node) *client.Client {
	t.Helper()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.HTTPAddr)
	}
	c, err := client.New(client.Config{Endpoints: eps, RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rotate returns nodes starting at index i, so that clients made from it
// prefer different nodes.
func rotate(nodes []*cluster.Node, i int) []*cluster.Node {
	i %= len(nodes)
	return append(slices.Clone(nodes[i:]), nodes[:i]...)
}

// revisionEverywhere waits until the live nodes agree and returns their
// store revision.
func revisionEverywhere(t testing.TB, c *cluster.Cluster) int64 {
	t.Helper()
	c.WaitConverged(t)
	var rev int64 = -1
	for id, s := range c.Statuses(t) {
		if rev >= 0 && s.Revision != rev {
			t.Fatalf("%s at revision %d, another node at %d after convergence", id, s.Revision, rev)
		}
		rev = s.Revision
	}
	return rev
}

// TestCASCounter has 20 goroutines, spread over the three nodes, each make
// 10 compare-and-swap increments of one counter (read value and mod
// revision, write value+1 with ?cas=<mod revision>, retry on 409): the
// counter ends at exactly the number of successful writes, 200.
func TestCASCounter(t *testing.T) {
	c := cluster.Start(t, 3)
	const (
		workers = 20
		each    = 10
		key     = "cas/counter"
	)
	nodes := c.Nodes()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := newClient(t, nodes...).Put(ctx, key, []byte("0"), client.WithCAS(0)); err != nil {
		t.Fatal(err)
	}

	var (
		successes, conflicts atomic.Int64
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		failures             []string
		revs                 = map[int64]string{} // mod revision written -> value
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	for w := range workers {
		cl := newClient(t, nodes[w%3]) // one node each: the load is spread
		wg.Go(func() {
			for done := 0; done < each && ctx.Err() == nil; {
				kv, err := cl.Get(ctx, key)
				if err != nil {
					fail("worker %d: GET: %v", w, err)
					return
				}
				n, err := strconv.Atoi(string(kv.Value))
				if err != nil {
					fail("worker %d: counter holds %q", w, kv.Value)
					return
				}
				next := strconv.Itoa(n + 1)
				put, err := cl.Put(ctx, key, []byte(next), client.WithCAS(kv.ModRevision))
				var ce *client.ConflictError
				switch {
				case errors.As(err, &ce):
					conflicts.Add(1)
					if ce.ModRevision <= kv.ModRevision {
						fail("worker %d: conflict reports mod revision %d, not above the %d read", w, ce.ModRevision, kv.ModRevision)
					}
				case err != nil:
					fail("worker %d: PUT ?cas=%d: %v", w, kv.ModRevision, err)
					return
				default:
					done++
					successes.Add(1)
					mu.Lock()
					if prev, dup := revs[put.Revision]; dup {
						failures = append(failures, fmt.Sprintf("revision %d acknowledged twice (%s and %s)", put.Revision, prev, next))
					}
					revs[put.Revision] = next
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if ctx.Err() != nil {
		t.Fatalf("increments did not finish within the time bound: %d done", successes.Load())
	}
	t.Logf("%d successful CAS increments, %d conflicts", successes.Load(), conflicts.Load())
	if got := successes.Load(); got != workers*each {
		t.Errorf("%d successful increments, want %d", got, workers*each)
	}

	// Every acknowledged increment wrote the next number: the values by
	// revision are 1, 2, ..., 200.
	order := slices.Sorted(func(yield func(int64) bool) {
		for r := range revs {
			if !yield(r) {
				return
			}
		}
	})
	for i, r := range order {
		if revs[r] != strconv.Itoa(i+1) {
			t.Errorf("the increment at revision %d wrote %s, want %d", r, revs[r], i+1)
			break
		}
	}
	c.WaitConverged(t)
	want := strconv.Itoa(workers * each)
	for _, n := range nodes {
		for _, q := range [][]string{nil, {"consistency=stale"}} {
			r, err := n.HTTP().Get(key, q...)
			must(t, err)
			if r.Status != http.StatusOK || string(r.Body) != want {
				t.Errorf("GET %s via %s %v: %s, want %s", key, n.ID, q, r, want)
			}
			if v, _ := r.HeaderInt(hVersion); v != workers*each+1 {
				t.Errorf("GET via %s %v: version %d, want %d (the create and every increment)", n.ID, q, v, workers*each+1)
			}
		}
	}
}

// TestTTLExpiry writes keys with ttl=2s next to one without: they expire on
// every node (stale reads return 404) even though the leader is killed
// before they expire, and none comes back after all three nodes are killed
// and restarted; the key without a TTL survives throughout.
func TestTTLExpiry(t *testing.T) {
	c := cluster.Start(t, 3)
	nodes := c.Nodes()
	cl := newClient(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const ttl = 2 * time.Second
	old := c.Leader(t)
	// A watch on a follower that survives: it must report the expiries
	// as deletes.
	var survivor *cluster.Node
	for _, n := range nodes {
		if n != old {
			survivor = n
			break
		}
	}
	first, err := cl.Status(ctx)
	must(t, err)
	events := newClient(t, survivor).Watch(ctx, "ttl/short/", client.WithPrefix(), client.WithRevision(first.Revision+1))
	var ttlKeys []string
	written := time.Now()
	var last int64
	for i := range 5 {
		key := fmt.Sprintf("ttl/short/%d", i)
		var opts []client.Option
		if i%2 == 0 {
			opts = append(opts, client.WithCAS(0)) // TTL and CAS together
		}
		put, err := cl.Put(ctx, key, []byte("soon gone"), append(opts, client.WithTTL(ttl))...)
		if err != nil {
			t.Fatal(err)
		}
		ttlKeys, last = append(ttlKeys, key), put.Revision
	}
	// One through a transaction too.
	txn, err := cl.Txn(ctx, client.TxnRequest{Success: []client.Op{
		client.OpPut("ttl/short/txn", []byte("soon gone"), client.WithTTL(ttl)),
		client.OpPut("ttl/keep", []byte("forever")),
	}})
	if err != nil || !txn.Succeeded {
		t.Fatalf("TTL transaction: %+v, %v", txn, err)
	}
	ttlKeys, last = append(ttlKeys, "ttl/short/txn"), txn.Revision
	expiry := written.Add(ttl)
	t.Logf("wrote the keys in %v", time.Since(written))

	// Present on every node at once (stale reads that wait for the write).
	for _, n := range nodes {
		for _, key := range append(slices.Clone(ttlKeys), "ttl/keep") {
			r, err := n.HTTP().Get(key, "consistency=stale", "min_revision="+strconv.FormatInt(last, 10))
			must(t, err)
			if r.Status != http.StatusOK {
				t.Fatalf("stale GET %s via %s right after the write: %s", key, n.ID, r)
			}
		}
	}
	if time.Now().After(expiry.Add(-500 * time.Millisecond)) {
		t.Fatalf("writing and checking the keys took until %v before expiry; the machine is too slow for this test", time.Until(expiry))
	}

	t.Logf("checked them on every node %v before expiry", time.Until(expiry))
	// Kill the leader before the keys expire.
	must(t, c.Kill(old.ID))
	t.Logf("killed leader %s %v before expiry", old.ID, time.Until(expiry))
	c.WaitForNewLeader(t, old.ID)

	// waitGone polls key on n with query until it is 404, bounded; it
	// reports how long after expiry that was.
	waitGone := func(n *cluster.Node, key string, query ...string) {
		t.Helper()
		deadline := expiry.Add(5 * time.Second)
		for {
			r, err := n.HTTP().Get(key, query...)
			if err == nil && r.Status == http.StatusNotFound {
				if late := time.Since(expiry); late > 2*time.Second {
					t.Errorf("GET %s via %s %v: 404 only %v after expiry", key, n.ID, query, late)
				}
				checkError(t, r, http.StatusNotFound, "key_not_found")
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("GET %s via %s %v: still %v %v 5s after expiry", key, n.ID, query, r, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(time.Until(expiry))
	for _, n := range c.Live() {
		for _, key := range ttlKeys {
			waitGone(n, key, "consistency=stale")
			waitGone(n, key)
		}
	}
	// The killed leader comes back and does not bring them back.
	must(t, c.Restart(old.ID))
	c.Leader(t)
	c.WaitConverged(t)
	check := func(when string) {
		t.Helper()
		for _, n := range c.Nodes() {
			for _, q := range [][]string{nil, {"consistency=stale"}, {"consistency=leader"}} {
				for _, key := range ttlKeys {
					r, err := n.HTTP().Get(key, q...)
					must(t, err)
					if r.Status != http.StatusNotFound {
						t.Errorf("%s: GET %s via %s %v: %s, want 404", when, key, n.ID, q, r)
					}
				}
				r, err := n.HTTP().Get("ttl/keep", q...)
				must(t, err)
				if r.Status != http.StatusOK || string(r.Body) != "forever" {
					t.Errorf("%s: GET ttl/keep via %s %v: %s, want 200 forever", when, n.ID, q, r)
				}
			}
			r, err := n.HTTP().Do(context.Background(), http.MethodGet, "/v1/kv/?prefix=ttl/&consistency=stale", nil, nil)
			must(t, err)
			var page struct {
				KVs []struct {
					Key string `json:"key"`
				} `json:"kvs"`
			}
			if r.Status != http.StatusOK || r.JSON(&page) != nil || len(page.KVs) != 1 || page.KVs[0].Key != "ttl/keep" {
				t.Errorf("%s: stale listing of ttl/ via %s: %s, want only ttl/keep", when, n.ID, r)
			}
		}
	}
	check("after the old leader's restart")

	// The watch saw each TTL key written and then deleted by its expiry.
	deleted := map[string]int64{}
	var puts int
	for len(deleted) < len(ttlKeys) {
		select {
		case resp := <-events:
			if resp.Err != nil {
				t.Fatalf("watch: %v", resp.Err)
			}
			for _, ev := range resp.Events {
				switch {
				case ev.Type == client.EventPut && ev.Revision() <= last:
					puts++
				case ev.Type == client.EventDelete && ev.Revision() > last:
					if _, dup := deleted[ev.KV.Key]; dup {
						t.Errorf("%s deleted twice", ev.KV.Key)
					}
					deleted[ev.KV.Key] = ev.Revision()
				default:
					t.Errorf("unexpected event %s %s at revision %d", ev.Type, ev.KV.Key, ev.Revision())
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the watch on %s saw %d puts and the expiry of only %v of %v", survivor.ID, puts, deleted, ttlKeys)
		}
	}
	if puts != len(ttlKeys) {
		t.Errorf("the watch saw %d puts, want %d", puts, len(ttlKeys))
	}

	// Kill all three and restart them: nothing resurrects.
	for _, n := range c.Nodes() {
		must(t, c.Kill(n.ID))
	}
	for _, n := range c.Nodes() {
		must(t, c.Restart(n.ID))
	}
	c.Leader(t)
	c.WaitConverged(t)
	check("after a full restart")
}

// TestTxnBankTransfers has 8 goroutines move money between accounts with
// transactions guarded by the mod revisions of both accounts: the total is
// unchanged, and replaying the succeeded transfers in revision order gives
// exactly the final balances, so each was applied whole and none twice.
func TestTxnBankTransfers(t *testing.T) {
	c := cluster.Start(t, 3)
	nodes := c.Nodes()
	const (
		accounts = 5
		initial  = 100
		workers  = 8
		attempts = 30
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acct := func(i int) string { return fmt.Sprintf("bank/acct/%d", i) }
	setup := client.TxnRequest{Compare: []client.Cmp{client.Compare(acct(0)).NotExists()}}
	for i := range accounts {
		setup.Success = append(setup.Success, client.OpPut(acct(i), []byte(strconv.Itoa(initial))))
	}
	res, err := newClient(t, nodes...).Txn(ctx, setup)
	if err != nil || !res.Succeeded {
		t.Fatalf("setup: %+v, %v", res, err)
	}
	setupRev := res.Revision

	type transfer struct {
		from, to, amount int
		rev              int64
	}
	var (
		mu       sync.Mutex
		done     []transfer
		failed   atomic.Int64
		problems []string
		wg       sync.WaitGroup
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for w := range workers {
		cl := newClient(t, rotate(nodes, w)...)
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		wg.Go(func() {
			for range attempts {
				if ctx.Err() != nil {
					return
				}
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				// Read both in one snapshot.
				snap, err := cl.Txn(ctx, client.TxnRequest{Success: []client.Op{client.OpGet(acct(from)), client.OpGet(acct(to))}})
				if err != nil || !snap.Succeeded || len(snap.Results) != 2 || len(snap.Results[0].KVs) != 1 || len(snap.Results[1].KVs) != 1 {
					problem("worker %d: reading accounts: %+v, %v", w, snap, err)
					return
				}
				a, b := snap.Results[0].KVs[0], snap.Results[1].KVs[0]
				va, _ := strconv.Atoi(string(a.Value))
				vb, _ := strconv.Atoi(string(b.Value))
				amount := 1 + rng.IntN(20)
				if amount > va {
					amount = va
				}
				resp, err := cl.Txn(ctx, client.TxnRequest{
					Compare: []client.Cmp{
						client.Compare(a.Key).ModRevision("==", a.ModRevision),
						client.Compare(b.Key).ModRevision("==", b.ModRevision),
					},
					Success: []client.Op{
						client.OpPut(a.Key, []byte(strconv.Itoa(va-amount))),
						client.OpPut(b.Key, []byte(strconv.Itoa(vb+amount))),
					},
					Failure: []client.Op{client.OpGet(a.Key), client.OpGet(b.Key)},
				})
				switch {
				case err != nil:
					problem("worker %d: transfer: %v", w, err)
					return
				case resp.Succeeded:
					if len(resp.Results) != 2 || resp.Results[0].Revision != resp.Revision || resp.Results[1].Revision != resp.Revision {
						problem("worker %d: succeeded transfer answered %+v", w, resp)
					}
					mu.Lock()
					done = append(done, transfer{from, to, amount, resp.Revision})
					mu.Unlock()
				default:
					failed.Add(1)
					// The failure branch shows why: one of the accounts moved on.
					if len(resp.Results) != 2 || len(resp.Results[0].KVs) != 1 || len(resp.Results[1].KVs) != 1 ||
						(resp.Results[0].KVs[0].ModRevision == a.ModRevision && resp.Results[1].KVs[0].ModRevision == b.ModRevision) {
						problem("worker %d: failed transfer answered %+v though neither account changed", w, resp)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d transfers succeeded, %d failed their compare", len(done), failed.Load())
	if len(done) == 0 {
		t.Fatal("no transfer succeeded")
	}

	// Replay the succeeded transfers in revision order.
	slices.SortFunc(done, func(x, y transfer) int { return int(x.rev - y.rev) })
	want := make([]int, accounts)
	lastMod := make([]int64, accounts)
	for i := range want {
		want[i], lastMod[i] = initial, setupRev
	}
	for i, tr := range done {
		if i > 0 && tr.rev == done[i-1].rev {
			t.Errorf("two transfers acknowledged at revision %d", tr.rev)
		}
		want[tr.from] -= tr.amount
		want[tr.to] += tr.amount
		lastMod[tr.from], lastMod[tr.to] = tr.rev, tr.rev
	}
	c.WaitConverged(t)
	for _, n := range nodes {
		r, err := n.HTTP().Do(context.Background(), http.MethodGet, "/v1/kv/?prefix=bank/acct/&consistency=stale", nil, nil)
		must(t, err)
		var page struct {
			KVs []struct {
				Key         string `json:"key"`
				Value       string `json:"value"`
				ModRevision int64  `json:"mod_revision"`
			} `json:"kvs"`
		}
		if r.Status != http.StatusOK || r.JSON(&page) != nil || len(page.KVs) != accounts {
			t.Fatalf("listing the accounts via %s: %s", n.ID, r)
		}
		sum := 0
		for i, kv := range page.KVs {
			v, err := strconv.Atoi(kv.Value)
			if err != nil || v < 0 {
				t.Errorf("%s on %s holds %q", kv.Key, n.ID, kv.Value)
			}
			sum += v
			if v != want[i] || kv.ModRevision != lastMod[i] {
				t.Errorf("%s on %s: %d at mod revision %d, want %d at %d from replaying the transfers",
					kv.Key, n.ID, v, kv.ModRevision, want[i], lastMod[i])
			}
		}
		if sum != accounts*initial {
			t.Errorf("balances on %s sum to %d, want %d", n.ID, sum, accounts*initial)
		}
	}
}

// TestExactlyOnceAndReadYourWrites covers Idempotency-Key (a retried write
// is applied once, through any node) and min_revision (a stale read on a
// follower carrying the revision of a write never returns what was there
// before).
func TestExactlyOnceAndReadYourWrites(t *testing.T) {
	c := cluster.Start(t, 3)
	leader := c.Leader(t)
	followers := c.Followers(t)

	t.Run("IdempotencyKey", func(t *testing.T) {
		base := revisionEverywhere(t, c)
		hdr := func(k string) http.Header { return http.Header{"Idempotency-Key": {k}} }
		do := func(n *cluster.Node, method, path string, body []byte, key string) (*cluster.Response, int64) {
			t.Helper()
			r, err := n.HTTP().Do(context.Background(), method, path, body, hdr(key))
			must(t, err)
			if r.Status != http.StatusOK {
				t.Fatalf("%s %s via %s: %s", method, path, n.ID, r)
			}
			var wr struct {
				Revision int64 `json:"revision"`
			}
			must(t, r.JSON(&wr))
			return r, wr.Revision
		}
		// The same PUT twice through the leader, then through a follower.
		_, rev1 := do(leader, http.MethodPut, "/v1/kv/idem/a", []byte("first"), "put-a-1")
		_, rev2 := do(leader, http.MethodPut, "/v1/kv/idem/a", []byte("first"), "put-a-1")
		r3, rev3 := do(followers[0], http.MethodPut, "/v1/kv/idem/a", []byte("first"), "put-a-1")
		if rev1 != base+1 || rev2 != rev1 || rev3 != rev1 {
			t.Errorf("revisions %d, %d, %d for one write sent three times; want %d each", rev1, rev2, rev3, base+1)
		}
		if h, _ := r3.HeaderInt(hRevision); h < rev1 {
			t.Errorf("replayed answer %s %d", hRevision, h)
		}
		if got := revisionEverywhere(t, c); got != base+1 {
			t.Errorf("store revision %d after one write sent three times, want %d", got, base+1)
		}
		// A retry carrying other content still gets the first answer and
		// changes nothing: the key names the operation.
		_, rev4 := do(followers[1], http.MethodPut, "/v1/kv/idem/a", []byte("second"), "put-a-1")
		if rev4 != rev1 {
			t.Errorf("same key, other value: revision %d, want the first answer %d", rev4, rev1)
		}
		r, err := followers[1].HTTP().Get("idem/a")
		must(t, err)
		if string(r.Body) != "first" {
			t.Errorf("idem/a = %s, want first", r)
		}

		// DELETE and a transaction, each sent twice through two nodes.
		_, d1 := do(followers[0], http.MethodDelete, "/v1/kv/idem/a", nil, "del-a-1")
		r2, d2 := do(leader, http.MethodDelete, "/v1/kv/idem/a", nil, "del-a-1")
		var wr cluster.WriteResult
		must(t, r2.JSON(&wr))
		if d1 != rev1+1 || d2 != d1 || wr.Deleted != 1 {
			t.Errorf("delete sent twice: revisions %d and %d (deleted %d), want %d and deleted 1", d1, d2, wr.Deleted, rev1+1)
		}
		body := []byte(`{"success": [{"op": "put", "key": "idem/t", "value": "x"}, {"op": "put", "key": "idem/u", "value": "y"}]}`)
		r5, t1 := do(leader, http.MethodPost, "/v1/txn", body, "txn-1")
		r6, t2 := do(followers[1], http.MethodPost, "/v1/txn", body, "txn-1")
		if t1 != d1+1 || t2 != t1 || string(r5.Body) != string(r6.Body) {
			t.Errorf("transaction sent twice: %s and %s, want revision %d both times", r5, r6, d1+1)
		}
		// The Go client: the same key from two clients on two nodes.
		ctx := context.Background()
		p1, err := newClient(t, followers[0]).Put(ctx, "idem/c", []byte("v"), client.WithIdempotencyKey("client-put-1"))
		must(t, err)
		p2, err := newClient(t, followers[1]).Put(ctx, "idem/c", []byte("v"), client.WithIdempotencyKey("client-put-1"))
		must(t, err)
		if p1.Revision != t1+1 || p2.Revision != p1.Revision {
			t.Errorf("client puts with one key: revisions %d and %d, want %d", p1.Revision, p2.Revision, t1+1)
		}
		if got := revisionEverywhere(t, c); got != base+4 {
			t.Errorf("store revision %d after four writes each sent more than once, want %d", got, base+4)
		}
	})

	t.Run("MinRevision", func(t *testing.T) {
		// Write through the leader, read at once from a follower with a
		// stale read carrying the write's revision: always the new value.
		for i := range 60 {
			f := followers[i%2]
			value := fmt.Sprintf("value %d", i)
			_, rev := putOK(t, leader, "ryw/key", value)
			r, err := f.HTTP().Get("ryw/key", "consistency=stale", "min_revision="+strconv.FormatInt(rev, 10))
			must(t, err)
			if r.Status != http.StatusOK || string(r.Body) != value {
				t.Fatalf("round %d: stale GET via %s with min_revision=%d: %s, want %q", i, f.ID, rev, r, value)
			}
			if got, _ := r.HeaderInt(hRevision); got < rev {
				t.Errorf("round %d: %s %d, want >= %d", i, hRevision, got, rev)
			}
			if got := r.Header.Get(hNode); got != f.ID {
				t.Errorf("round %d: stale read served by %q, want the follower %s", i, got, f.ID)
			}
		}
		// The same through the Go client: a writer on the leader, a
		// reader on one follower, stale reads with WithMinRevision.
		ctx := context.Background()
		w, rd := newClient(t, leader), newClient(t, followers[0])
		for i := range 30 {
			value := []byte(fmt.Sprintf("client %d", i))
			put, err := w.Put(ctx, "ryw/client", value)
			must(t, err)
			kv, err := rd.Get(ctx, "ryw/client", client.WithConsistency(client.Stale), client.WithMinRevision(put.Revision))
			must(t, err)
			if string(kv.Value) != string(value) || kv.Revision < put.Revision || kv.Node != followers[0].ID {
				t.Fatalf("round %d: read %q at revision %d from %s, want %q at >= %d from %s",
					i, kv.Value, kv.Revision, kv.Node, value, put.Revision, followers[0].ID)
			}
			page, err := rd.List(ctx, "ryw/", client.WithConsistency(client.Stale), client.WithMinRevision(put.Revision))
			must(t, err)
			if page.Revision < put.Revision || len(page.KVs) != 2 || string(page.KVs[0].Value) != string(value) {
				t.Fatalf("round %d: stale listing at revision %d: %+v", i, page.Revision, page.KVs)
			}
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		testBadSemanticsInput(t, c)
	})
}

// testBadSemanticsInput sends malformed CAS, TTL, transaction, watch and
// min_revision requests through the leader and a follower: each gets a 400
// with the right code, and nothing changes.
func testBadSemanticsInput(t *testing.T, c *cluster.Cluster) {
	leader := c.Leader(t)
	follower := c.Followers(t)[0]
	putOK(t, leader, "bad/exists", "v")
	base := revisionEverywhere(t, c)

	ops := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(`{"op": "put", "key": "bad/txn/%d", "value": "x"}`, i))
		}
		return strings.Join(parts, ",")
	}
	cmps := func(n int) string {
		var parts []string
		for range n {
			parts = append(parts, `{"key": "bad/exists", "target": "version", "op": ">", "value": 0}`)
		}
		return strings.Join(parts, ",")
	}
	type tc struct {
		name, method, path, body string
		status                   int
		code                     string
	}
	cases := []tc{
		{"cas -1", "PUT", "/v1/kv/bad/k?cas=-1", "v", 400, "invalid_argument"},
		{"cas abc", "PUT", "/v1/kv/bad/k?cas=abc", "v", 400, "invalid_argument"},
		{"cas empty", "PUT", "/v1/kv/bad/k?cas=", "v", 400, "invalid_argument"},
		{"delete cas abc", "DELETE", "/v1/kv/bad/exists?cas=abc", "", 400, "invalid_argument"},
		{"delete cas -1", "DELETE", "/v1/kv/bad/exists?cas=-1", "", 400, "invalid_argument"},
		{"ttl 0s", "PUT", "/v1/kv/bad/k?ttl=0s", "v", 400, "invalid_argument"},
		{"ttl 10ms", "PUT", "/v1/kv/bad/k?ttl=10ms", "v", 400, "invalid_argument"},
		{"ttl forever", "PUT", "/v1/kv/bad/k?ttl=forever", "v", 400, "invalid_argument"},
		{"ttl negative", "PUT", "/v1/kv/bad/k?ttl=-5s", "v", 400, "invalid_argument"},
		{"ttl with cas abc", "PUT", "/v1/kv/bad/k?ttl=30s&cas=abc", "v", 400, "invalid_argument"},
		{"txn cut short", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "bad/k"`, 400, "malformed_json"},
		{"txn not JSON", "POST", "/v1/txn", `put bad/k v`, 400, "malformed_json"},
		{"txn an array", "POST", "/v1/txn", `[{"op": "put"}]`, 400, "malformed_json"},
		{"txn unknown top field", "POST", "/v1/txn", `{"success": [], "otherwise": []}`, 400, "malformed_json"},
		{"txn unknown op field", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "bad/k", "value": "v", "colour": "red"}]}`, 400, "malformed_json"},
		{"txn unknown compare field", "POST", "/v1/txn", `{"compare": [{"key": "bad/k", "target": "version", "op": "==", "value": 0, "x": 1}]}`, 400, "malformed_json"},
		{"txn 129 success ops", "POST", "/v1/txn", `{"success": [` + ops(129) + `]}`, 400, "invalid_argument"},
		{"txn 129 failure ops", "POST", "/v1/txn", `{"failure": [` + ops(129) + `]}`, 400, "invalid_argument"},
		{"txn 129 compares", "POST", "/v1/txn", `{"compare": [` + cmps(129) + `], "success": [` + ops(1) + `]}`, 400, "invalid_argument"},
		{"txn unknown op", "POST", "/v1/txn", `{"success": [{"op": "patch", "key": "bad/k"}]}`, 400, "invalid_argument"},
		{"txn unknown target", "POST", "/v1/txn", `{"compare": [{"key": "bad/k", "target": "colour", "op": "==", "value": 1}], "success": [` + ops(1) + `]}`, 400, "invalid_argument"},
		{"txn unknown compare op", "POST", "/v1/txn", `{"compare": [{"key": "bad/k", "target": "version", "op": "=", "value": 1}], "success": [` + ops(1) + `]}`, 400, "invalid_argument"},
		{"txn string for a revision", "POST", "/v1/txn", `{"compare": [{"key": "bad/k", "target": "mod_revision", "op": "==", "value": "1"}], "success": [` + ops(1) + `]}`, 400, "invalid_argument"},
		{"txn ttl 10ms", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "bad/k", "value": "v", "ttl": "10ms"}]}`, 400, "invalid_argument"},
		{"txn ttl forever", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "bad/k", "value": "v", "ttl": "forever"}]}`, 400, "invalid_argument"},
		{"txn put with prefix", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "bad/", "value": "v", "prefix": true}]}`, 400, "invalid_argument"},
		{"txn get with a value", "POST", "/v1/txn", `{"success": [{"op": "get", "key": "bad/k", "value": "v"}]}`, 400, "invalid_argument"},
		{"txn bad base64", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "bad/k", "value_base64": "!!"}]}`, 400, "invalid_argument"},
		{"txn empty key", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "", "value": "v"}]}`, 400, "invalid_key"},
		{"txn NUL in key", "POST", "/v1/txn", `{"success": [{"op": "put", "key": "a\u0000b", "value": "v"}]}`, 400, "invalid_key"},
		{"txn negative limit", "POST", "/v1/txn", `{"success": [{"op": "get", "key": "bad/", "prefix": true, "limit": -1}]}`, 400, "invalid_argument"},
		{"watch rev abc", "GET", "/v1/watch/bad/k?rev=abc", "", 400, "invalid_argument"},
		{"watch rev -1", "GET", "/v1/watch/bad/k?rev=-1", "", 400, "invalid_argument"},
		{"watch prefix maybe", "GET", "/v1/watch/bad/?prefix=maybe", "", 400, "invalid_argument"},
		{"min_revision abc", "GET", "/v1/kv/bad/exists?min_revision=abc", "", 400, "invalid_argument"},
		{"min_revision -1", "GET", "/v1/kv/bad/exists?min_revision=-1", "", 400, "invalid_argument"},
		{"min_revision abc stale", "GET", "/v1/kv/bad/exists?consistency=stale&min_revision=abc", "", 400, "invalid_argument"},
		{"min_revision abc on a list", "GET", "/v1/kv/?prefix=bad/&min_revision=abc", "", 400, "invalid_argument"},
	}
	for _, via := range []*cluster.Node{leader, follower} {
		t.Run(via.ID, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					var body []byte
					if tc.body != "" {
						body = []byte(tc.body)
					}
					r, err := via.HTTP().Do(context.Background(), tc.method, tc.path, body, nil)
					if err != nil {
						t.Fatalf("%s %s: %v", tc.method, tc.path, err)
					}
					checkError(t, r, tc.status, tc.code)
				})
			}
		})
	}
	// A watch from a revision in the future: the node waits a moment for
	// it (it might be lagging) and then refuses it. Both at once: each
	// waits the server's leader wait.
	var wg sync.WaitGroup
	for _, via := range []*cluster.Node{leader, follower} {
		wg.Go(func() {
			path := "/v1/watch/bad/?prefix=true&rev=" + strconv.FormatInt(base+1000, 10)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			r, err := via.HTTP().Do(ctx, http.MethodGet, path, nil, nil)
			if err != nil {
				t.Errorf("GET %s via %s: %v", path, via.ID, err)
				return
			}
			checkError(t, r, http.StatusBadRequest, "invalid_argument")
			if e, _ := r.Error(); !strings.Contains(e.Error, "future") {
				t.Errorf("watch from the future via %s: message %q does not say why", via.ID, e.Error)
			}
		})
	}
	wg.Wait()

	// Through the Go client, the same refusals come back as
	// ErrInvalidArgument.
	cl := newClient(t, follower, leader)
	ctx := context.Background()
	if _, err := cl.Put(ctx, "bad/k", []byte("v"), client.WithTTL(10*time.Millisecond)); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("client Put with a 10ms TTL: %v, want ErrInvalidArgument", err)
	}
	var many []client.Op
	for i := range 129 {
		many = append(many, client.OpPut(fmt.Sprintf("bad/txn/%d", i), []byte("x")))
	}
	if _, err := cl.Txn(ctx, client.TxnRequest{Success: many}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("client Txn with 129 operations: %v, want ErrInvalidArgument", err)
	}

	// Nothing changed anywhere.
	if got := revisionEverywhere(t, c); got != base {
		t.Errorf("store revision %d after the bad requests, want %d (unchanged)", got, base)
	}
	for _, key := range []string{"bad/k", "bad/txn/0", "bad/txn/128"} {
		checkAbsent(t, leader, key)
	}
	r, err := follower.HTTP().Get("bad/exists")
	must(t, err)
	if r.Status != http.StatusOK || string(r.Body) != "v" {
		t.Errorf("bad/exists after the bad requests: %s", r)
	}
	if v, _ := r.HeaderInt(hVersion); v != 1 {
		t.Errorf("bad/exists version %d, want 1", v)
	}
}
