//go:build linux

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairn-kv/cairn/tests/cluster"
)

// WorkloadOptions configures the clients of a Workload.
type WorkloadOptions struct {
	// Clients is how many concurrent clients run; each makes one request
	// at a time. Zero means 6.
	Clients int
	// Keys is how many keys they share (k0, k1, ...). Zero means 4.
	Keys int
	// Timeout bounds each request. Zero means 1.5s.
	Timeout time.Duration
	// Think is the longest random pause between two requests of a client.
	// Zero means 20ms.
	Think time.Duration
	// MaxOps bounds the requests of each client. Zero means 20000.
	MaxOps int
	// MaxDuration bounds how long the clients run if nobody stops them.
	// Zero means 15 minutes.
	MaxDuration time.Duration
	// Stale makes reads ask for ?consistency=stale.
	Stale bool
	// Seed seeds the clients' choices. Zero means the clock.
	Seed uint64
}

// Workload is a set of clients running against a Cluster and the history
// they record.
type Workload struct {
	c     *Cluster
	opts  WorkloadOptions
	start time.Time
	keys  []string

	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	history []porcupine.Operation
	records []record
	phases  []phase
	stopped int64
	unclean []string
	codes   map[string]int
	seq     atomic.Int64
}

// record is the availability view of one request.
type record struct {
	call, ret int64
	write     bool
	outcome   outcome
}

type outcome uint8

const (
	done    outcome = iota // a definite answer (200, 404 read, 409 CAS)
	failed                 // a read that failed, or a write never sent
	unknown                // a write of unknown outcome
)

type phase struct {
	name  string
	start int64
}

// StartWorkload starts the clients. Client i sends its requests to the
// (i mod m)-th member node, m being the number of members at that moment.
func (c *Cluster) StartWorkload(t testing.TB, opts WorkloadOptions) *Workload {
	t.Helper()
	if opts.Clients == 0 {
		opts.Clients = 6
	}
	if opts.Keys == 0 {
		opts.Keys = 4
	}
	if opts.Timeout == 0 {
		opts.Timeout = 1500 * time.Millisecond
	}
	if opts.Think == 0 {
		opts.Think = 20 * time.Millisecond
	}
	if opts.MaxOps == 0 {
		opts.MaxOps = 20000
	}
	if opts.MaxDuration == 0 {
		opts.MaxDuration = 15 * time.Minute
	}
	if opts.Seed == 0 {
		opts.Seed = uint64(time.Now().UnixNano())
	}
	w := &Workload{c: c, opts: opts, start: time.Now(), stop: make(chan struct{})}
	for i := range opts.Keys {
		w.keys = append(w.keys, "k"+strconv.Itoa(i))
	}
	w.phases = []phase{{name: "warm-up", start: 0}}
	t.Logf("workload: %d clients, keys %v, request timeout %v, stale reads %v, seed %d",
		opts.Clients, w.keys, opts.Timeout, opts.Stale, opts.Seed)
	for i := range opts.Clients {
		cl := w.newClient(i)
		w.wg.Go(cl.loop)
	}
	c.OnFailure(func(dir string) { w.writeArtifacts(dir) })
	// Stop the clients even if the test ends early.
	t.Cleanup(w.Stop)
	return w
}

// Now is the workload's clock: nanoseconds since it started (monotonic).
func (w *Workload) Now() int64 { return time.Since(w.start).Nanoseconds() }

// Phase starts a new availability phase named name.
func (w *Workload) Phase(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.phases = append(w.phases, phase{name: name, start: w.Now()})
}

// Stop stops the clients and waits for their requests to end.
func (w *Workload) Stop() {
	w.mu.Lock()
	select {
	case <-w.stop:
		w.mu.Unlock()
		return
	default:
	}
	close(w.stop)
	w.mu.Unlock()
	w.wg.Wait()
	w.mu.Lock()
	w.stopped = w.Now()
	w.mu.Unlock()
}

// Keys returns the keys the clients use.
func (w *Workload) Keys() []string { return w.keys }

// History returns the recorded operations.
func (w *Workload) History() []porcupine.Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]porcupine.Operation(nil), w.history...)
}

// Client is one sequential client: it sends one request at a time and
// records each in the history.
type Client struct {
	w    *Workload
	id   int
	rnd  *rand.Rand
	hc   *http.Client
	revs map[string]int64 // the last mod revision this client saw per key
}

func (w *Workload) newClient(id int) *Client {
	return &Client{
		w:   w,
		id:  id,
		rnd: rand.New(rand.NewPCG(w.opts.Seed, uint64(id))),
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     10 * time.Second,
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		}},
		revs: map[string]int64{},
	}
}

// Client returns a client with id that is not part of the running
// load, for operations a test makes itself; they are recorded too.
func (w *Workload) Client(id int) *Client { return w.newClient(id) }

func (cl *Client) loop() {
	defer cl.hc.CloseIdleConnections()
	w := cl.w
	for range w.opts.MaxOps {
		select {
		case <-w.stop:
			return
		default:
		}
		if time.Since(w.start) > w.opts.MaxDuration {
			return
		}
		members := w.c.Members()
		if len(members) == 0 {
			return
		}
		n := members[cl.id%len(members)]
		in := cl.next()
		_, res := cl.Do(n, in)
		pause := time.Duration(cl.rnd.Int64N(int64(w.opts.Think) + 1))
		if res != done {
			pause += 50 * time.Millisecond // do not spin on a dead node
		}
		select {
		case <-w.stop:
			return
		case <-time.After(pause):
		}
	}
}

// next picks the client's next operation.
func (cl *Client) next() Input {
	w := cl.w
	key := w.keys[cl.rnd.IntN(len(w.keys))]
	value := fmt.Sprintf("c%d-%d", cl.id, w.seq.Add(1))
	switch r := cl.rnd.Float64(); {
	case r < 0.45:
		return Input{Kind: Get, Key: key}
	case r < 0.75:
		return Input{Kind: Put, Key: key, Value: value}
	case r < 0.92:
		expect := cl.revs[key]
		if cl.rnd.IntN(5) == 0 {
			expect = 0
		}
		return Input{Kind: CAS, Key: key, Value: value, Expect: expect}
	default:
		return Input{Kind: Delete, Key: key}
	}
}

// Do sends in to node n, records it, and returns the output and how it
// ended.
func (cl *Client) Do(n *Node, in Input) (Output, outcome) {
	return cl.do(n, in, cl.w.opts.Timeout, cl.w.opts.Stale)
}

func (cl *Client) do(n *Node, in Input, timeout time.Duration, stale bool) (Output, outcome) {
	w := cl.w
	var method, query string
	var body []byte
	switch in.Kind {
	case Get:
		method = http.MethodGet
		if stale {
			query = "?consistency=stale"
		}
	case Put:
		method, body = http.MethodPut, []byte(in.Value)
	case CAS:
		method, body, query = http.MethodPut, []byte(in.Value), "?cas="+strconv.FormatInt(in.Expect, 10)
	case Delete:
		method = http.MethodDelete
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	call := w.Now()
	req, err := http.NewRequestWithContext(ctx, method, n.URL()+cluster.KeyPath(in.Key)+query, rd)
	if err != nil {
		panic(err)
	}
	var status int
	var hdr http.Header
	var respBody []byte
	resp, err := cl.hc.Do(req)
	if err == nil {
		respBody, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		status, hdr = resp.StatusCode, resp.Header
	}
	ret := w.Now()
	meta := fmt.Sprintf("%s %s %.0fms", n.ID, statusText(status, err), float64(ret-call)/1e6)

	var out Output
	res := done
	write := in.Kind != Get
	switch {
	case err != nil && isDialError(err):
		res = failed // never sent
	case err != nil:
		if write {
			res = unknown
		} else {
			res = failed
		}
	case in.Kind == Get && status == http.StatusOK:
		rev, perr := strconv.ParseInt(hdr.Get("X-Cairn-Mod-Revision"), 10, 64)
		if perr != nil {
			res = failed
			meta += " (no mod revision header)"
			break
		}
		out = Output{Found: true, Value: string(respBody), Rev: rev}
		cl.revs[in.Key] = rev
	case in.Kind == Get && status == http.StatusNotFound && errCode(respBody) == "key_not_found":
		out = Output{Found: false}
		cl.revs[in.Key] = 0
	case in.Kind == Get:
		res = failed
	case status == http.StatusOK:
		var wr struct {
			Revision int64 `json:"revision"`
			Deleted  int64 `json:"deleted"`
		}
		if json.Unmarshal(respBody, &wr) != nil || wr.Revision <= 0 {
			res = unknown
			meta += " (bad body)"
			break
		}
		out = Output{Rev: wr.Revision, Deleted: wr.Deleted}
		if in.Kind == Delete {
			cl.revs[in.Key] = 0
		} else {
			cl.revs[in.Key] = wr.Revision
		}
	case in.Kind == CAS && status == http.StatusConflict:
		var eb struct {
			Code        string `json:"code"`
			ModRevision *int64 `json:"mod_revision"`
		}
		if json.Unmarshal(respBody, &eb) != nil || eb.Code != "cas_conflict" || eb.ModRevision == nil {
			res = unknown
			meta += " (bad 409 body)"
			break
		}
		out = Output{Conflict: true, ModRev: *eb.ModRevision}
		cl.revs[in.Key] = *eb.ModRevision
	case status == http.StatusBadRequest:
		// The request was refused before anything happened; the
		// harness never sends a bad one, so count it as a failure.
		res = failed
		meta += " " + strings.TrimSpace(string(respBody))
	default:
		res = unknown
	}
	if res == unknown {
		out = Output{Unknown: true}
	}
	code := ""
	if err == nil && status >= 300 {
		var eb struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(respBody, &eb) != nil || eb.Error == "" || eb.Code == "" {
			code = "unclean"
		} else {
			code = eb.Code
		}
	}
	w.mu.Lock()
	if code != "" {
		if w.codes == nil {
			w.codes = map[string]int{}
		}
		w.codes[fmt.Sprintf("%d %s", status, code)]++
		if code == "unclean" && len(w.unclean) < 20 {
			w.unclean = append(w.unclean, fmt.Sprintf("%s %s%s via %s: %d %q",
				method, cluster.KeyPath(in.Key), query, n.ID, status, truncate(respBody)))
		}
	}
	w.records = append(w.records, record{call: call, ret: ret, write: write, outcome: res})
	if res != failed {
		w.history = append(w.history, porcupine.Operation{
			ClientId: cl.id, Input: in, Call: call, Output: out, Return: ret, Metadata: meta,
		})
	}
	w.mu.Unlock()
	return out, res
}

// UncleanErrors returns (up to 20) error answers that were not a JSON
// body with an error message and a code.
func (w *Workload) UncleanErrors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.unclean...)
}

// ErrorCodes counts the error answers by status and code.
func (w *Workload) ErrorCodes() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.codes {
		out[k] = v
	}
	return out
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

func statusText(status int, err error) string {
	if err != nil {
		s := err.Error()
		if i := strings.LastIndex(s, ": "); i >= 0 {
			s = s[i+2:]
		}
		return "error: " + s
	}
	return strconv.Itoa(status)
}

func errCode(body []byte) string {
	var eb struct {
		Code string `json:"code"`
	}
	json.Unmarshal(body, &eb)
	return eb.Code
}

// isDialError reports whether the request never reached the server.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// FinalReads reads every key linearizably (through any live node, retried
// until it works or timeout passes) and records the reads in the history
// under client id.
func (w *Workload) FinalReads(t testing.TB, id int, timeout time.Duration) {
	t.Helper()
	cl := w.newClient(id)
	defer cl.hc.CloseIdleConnections()
	for _, k := range w.keys {
		ok := poll(timeout, func() bool {
			live := w.c.Live()
			if len(live) == 0 {
				return false
			}
			_, res := cl.do(live[cl.rnd.IntN(len(live))], Input{Kind: Get, Key: k}, 5*time.Second, false)
			return res == done
		})
		if !ok {
			t.Errorf("final read of %s: no answer within %v", k, timeout)
		}
	}
}

// Availability summarises each phase: requests made (by call time),
// definite answers, failures and writes of unknown outcome, and the rate
// of definite answers.
func (w *Workload) Availability() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := w.stopped
	if end == 0 {
		end = w.Now()
	}
	var lines []string
	for i, p := range w.phases {
		until := end
		if i+1 < len(w.phases) {
			until = w.phases[i+1].start
		}
		if until <= p.start {
			continue
		}
		var total, ok, fail, unk, writes, writesOK int
		for _, r := range w.records {
			if r.call < p.start || r.call >= until {
				continue
			}
			total++
			if r.write {
				writes++
			}
			switch r.outcome {
			case done:
				ok++
				if r.write {
					writesOK++
				}
			case failed:
				fail++
			case unknown:
				unk++
			}
		}
		if total == 0 {
			continue
		}
		secs := float64(until-p.start) / 1e9
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(ok) / float64(total)
		}
		lines = append(lines, fmt.Sprintf("%-26s %5.1fs  requests=%5d  ok=%5d (%5.1f%%)  failed=%4d  unknown=%4d  writes ok=%d/%d  throughput=%6.1f ok/s",
			p.name, secs, total, ok, pct, fail, unk, writesOK, writes, float64(ok)/secs))
	}
	return lines
}

// PhaseWritesOK returns how many writes were acknowledged among the
// requests made during the phase named name.
func (w *Workload) PhaseWritesOK(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := w.stopped
	if end == 0 {
		end = w.Now()
	}
	count := 0
	for i, p := range w.phases {
		if p.name != name {
			continue
		}
		until := end
		if i+1 < len(w.phases) {
			until = w.phases[i+1].start
		}
		for _, r := range w.records {
			if r.call >= p.start && r.call < until && r.write && r.outcome == done {
				count++
			}
		}
	}
	return count
}

func (w *Workload) writeArtifacts(dir string) {
	writeFile(dir, "history.txt", FormatHistory(w.History()))
	writeFile(dir, "availability.txt", strings.Join(w.Availability(), "\n")+"\n")
}
