package tests

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/cluster"
)

// Header names of the HTTP API.
const (
	hRevision       = "X-Cairn-Revision"
	hModRevision    = "X-Cairn-Mod-Revision"
	hCreateRevision = "X-Cairn-Create-Revision"
	hVersion        = "X-Cairn-Version"
	hNode           = "X-Cairn-Node"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func valueOf(key string) string { return "value of " + key }

// putOK writes key through n and requires 200 {"revision": N>0}; it
// returns the response and N.
func putOK(t testing.TB, n *cluster.Node, key, value string) (*cluster.Response, int64) {
	t.Helper()
	r, err := n.HTTP().Put(key, []byte(value))
	if err != nil {
		t.Fatalf("PUT %s via %s: %v", key, n.ID, err)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("PUT %s via %s: got %s, want 200", key, n.ID, r)
	}
	var wr cluster.WriteResult
	if err := r.JSON(&wr); err != nil {
		t.Fatalf("PUT %s via %s: %v", key, n.ID, err)
	}
	if wr.Revision <= 0 {
		t.Fatalf("PUT %s via %s: revision %d in %s, want > 0", key, n.ID, wr.Revision, r)
	}
	return r, wr.Revision
}

// writeKeys writes count keys prefix%05d (value valueOf(key)) through the
// targets in turn with workers goroutines, and requires every write to
// succeed. It is bounded by count and by a two-minute deadline. It
// returns the acknowledged keys and values.
func writeKeys(t testing.TB, targets []*cluster.Node, prefix string, count, workers int) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		next   atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		acked  = make(map[string]string, count)
		wg     sync.WaitGroup
		failed []string
	)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && errs.Load() < 20 {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				key := fmt.Sprintf("%s%05d", prefix, i)
				n := targets[i%len(targets)]
				r, err := n.HTTP().Put(key, []byte(valueOf(key)))
				if err != nil || r.Status != http.StatusOK {
					errs.Add(1)
					mu.Lock()
					failed = append(failed, fmt.Sprintf("PUT %s via %s: %v %v", key, n.ID, err, r))
					mu.Unlock()
					continue
				}
				mu.Lock()
				acked[key] = valueOf(key)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, f := range failed {
		t.Error(f)
	}
	if len(acked) != count {
		t.Fatalf("wrote %d of %d keys (deadline: %v)", len(acked), count, ctx.Err())
	}
	return acked
}

// checkKeys reads every key of want through n with the query (such as
// "consistency=stale") and requires 200 and the value; when servedBy is
// not empty the answer must carry X-Cairn-Node: servedBy.
func checkKeys(t testing.TB, n *cluster.Node, want map[string]string, servedBy string, query ...string) {
	t.Helper()
	keys := make(chan string)
	var (
		mu       sync.Mutex
		problems []string
		bad      int
		wg       sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for key := range keys {
				r, err := n.HTTP().Get(key, query...)
				var p string
				switch {
				case err != nil:
					p = err.Error()
				case r.Status != http.StatusOK:
					p = "got " + r.String()
				case string(r.Body) != want[key]:
					p = fmt.Sprintf("value %q, want %q", r.Body, want[key])
				case servedBy != "" && r.Header.Get(hNode) != servedBy:
					p = fmt.Sprintf("%s: %q, want %q", hNode, r.Header.Get(hNode), servedBy)
				}
				if p != "" {
					mu.Lock()
					bad++
					if len(problems) < 10 {
						problems = append(problems, fmt.Sprintf("GET %s via %s %v: %s", key, n.ID, query, p))
					}
					mu.Unlock()
				}
			}
		})
	}
	for key := range want {
		keys <- key
	}
	close(keys)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	if bad > 0 {
		t.Errorf("%d of %d keys wrong on %s %v", bad, len(want), n.ID, query)
	}
}

// checkAbsent requires GET key through n (default consistency) to be 404
// key_not_found.
func checkAbsent(t testing.TB, n *cluster.Node, key string) {
	t.Helper()
	r, err := n.HTTP().Get(key)
	if err != nil {
		t.Errorf("GET %s via %s: %v", key, n.ID, err)
		return
	}
	checkError(t, r, http.StatusNotFound, "key_not_found")
}

// checkError requires r to be a JSON error with status and code.
func checkError(t testing.TB, r *cluster.Response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("got %s, want status %d code %s", r, status, code)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json (body %s)", ct, r)
	}
	e, ok := r.Error()
	if !ok {
		t.Errorf("body %s is not a JSON error with a code", r)
		return
	}
	if e.Code != code {
		t.Errorf("code %q, want %q (body %s)", e.Code, code, r)
	}
	if e.Error == "" {
		t.Errorf("empty error message in %s", r)
	}
}

// headerInt requires r to carry the integer header name.
func headerInt(t testing.TB, r *cluster.Response, name string) int64 {
	t.Helper()
	v, ok := r.HeaderInt(name)
	if !ok {
		t.Errorf("header %s = %q, want an integer (response %s)", name, r.Header.Get(name), r)
	}
	return v
}

// waitLeaderAmong polls the status of the given nodes only (a stopping
// node may not answer) until they all name the same leader other than
// old and that node says it is Leader. It returns the leader's ID.
func waitLeaderAmong(t testing.TB, nodes []*cluster.Node, old string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []string
	for {
		last = last[:0]
		leader := ""
		agree := true
		states := map[string]string{}
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s, err := n.HTTP().Status(ctx)
			cancel()
			if err != nil {
				last = append(last, n.ID+": "+err.Error())
				agree = false
				continue
			}
			last = append(last, fmt.Sprintf("%s: %s leader=%q term=%d", n.ID, s.State, s.Leader.ID, s.Term))
			states[n.ID] = s.State
			if s.Leader.ID == "" || s.Leader.ID == old || (leader != "" && s.Leader.ID != leader) {
				agree = false
			}
			leader = s.Leader.ID
		}
		if agree && states[leader] == "Leader" {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader other than %s among the nodes within %v: %s", old, timeout, strings.Join(last, "; "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writer writes unique keys through the nodes in turn from a few
// goroutines until stopped, the count bound or the time bound, and
// records which writes were acknowledged (200) and which were refused
// (4xx, or 503: nothing was applied). Other outcomes (transport errors,
// 504 timeout) are unknown.
type writer struct {
	mu      sync.Mutex
	acked   map[string]string
	errors  int
	kinds   map[string]int    // "node: error kind" -> count
	refused map[string]string // key -> "status code" of a definite failure (4xx, 503)
	lastErr string
	count   atomic.Int64
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func startWriter(nodes []*cluster.Node, prefix string, workers, maxWrites int, maxTime time.Duration) *writer {
	w := &writer{acked: map[string]string{}, refused: map[string]string{}, kinds: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(maxTime)
	var next atomic.Int64
	for range workers {
		w.wg.Go(func() {
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				i := next.Add(1) - 1
				if i >= int64(maxWrites) || time.Now().After(deadline) {
					return
				}
				key := prefix + strconv.FormatInt(i, 10)
				n := nodes[int(i)%len(nodes)]
				if !n.Running() {
					continue
				}
				r, err := n.HTTP().Put(key, []byte(valueOf(key)))
				w.mu.Lock()
				if err == nil && r.Status == http.StatusOK {
					w.acked[key] = valueOf(key)
					w.count.Add(1)
				} else {
					w.errors++
					kind := ""
					if err != nil {
						w.lastErr = err.Error()
						kind = errKind(err)
					} else {
						w.lastErr = r.String()
						e, _ := r.Error()
						kind = fmt.Sprintf("%d %s", r.Status, e.Code)
						if r.Status == http.StatusServiceUnavailable || (r.Status >= 400 && r.Status < 500) {
							w.refused[key] = kind
						}
					}
					w.kinds[n.ID+": "+kind]++
				}
				ok := err == nil && r.Status == http.StatusOK
				w.mu.Unlock()
				if !ok {
					time.Sleep(5 * time.Millisecond) // no tight loop against a node that refuses
				}
			}
		})
	}
	return w
}

// waitAcked waits until at least n writes are acknowledged.
func (w *writer) waitAcked(t testing.TB, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for w.count.Load() < n {
		if time.Now().After(deadline) {
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("only %d writes acknowledged within %v (want %d); %d errors, last: %s", w.count.Load(), timeout, n, w.errors, w.lastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// halt stops the writer and waits for its goroutines; it may be called
// more than once.
func (w *writer) halt() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// refusedKeys returns the keys whose write got a definite failure, with
// the status and code; call it after finish.
func (w *writer) refusedKeys() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.refused)
}

// finish stops the writer and returns the acknowledged writes and a
// description of the failed ones.
func (w *writer) finish() (acked map[string]string, failures string) {
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for k, n := range w.kinds {
		parts = append(parts, fmt.Sprintf("%s x%d", k, n))
	}
	slices.Sort(parts)
	return w.acked, fmt.Sprintf("%d failed or unknown: %s", w.errors, strings.Join(parts, ", "))
}

// errKind names a transport error briefly.
func errKind(err error) string {
	switch s := err.Error(); {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "EOF"):
		return "EOF"
	case strings.Contains(s, "Timeout"), strings.Contains(s, "deadline"):
		return "timeout"
	default:
		return s
	}
}
