package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
	"github.com/cairn-kv/cairn/tests/cluster"
)

// TestClientAgainstCluster runs the Go client against three real nodes:
// every call and error shape, a write through a follower, and then
// workers that keep calling, with no change on their side, while the
// endpoint they prefer (the leader) is killed.
func TestClientAgainstCluster(t *testing.T) {
	c := cluster.Start(t, 3)
	leader := c.Leader(t)
	followers := c.Followers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The leader first: the client prefers it until it dies.
	cl := newClient(t, leader, followers[0], followers[1])

	put, err := cl.Put(ctx, "dir/a b", []byte{0, 1, 0xff})
	must(t, err)
	for _, cons := range []client.Consistency{client.Linearizable, client.Leader, client.Stale} {
		g, err := cl.Get(ctx, "dir/a b", client.WithConsistency(cons), client.WithMinRevision(put.Revision))
		if err != nil || string(g.Value) != "\x00\x01\xff" || g.ModRevision != put.Revision || g.Revision < put.Revision {
			t.Fatalf("Get %s = %+v, %v", cons, g, err)
		}
	}
	if _, err := cl.Get(ctx, "missing"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get missing: %v, want ErrNotFound", err)
	}
	_, err = cl.Put(ctx, "dir/a b", []byte("x"), client.WithCAS(put.Revision+100))
	var ce *client.ConflictError
	if !errors.As(err, &ce) || ce.ModRevision != put.Revision {
		t.Errorf("CAS conflict: %v, want a ConflictError with mod revision %d", err, put.Revision)
	}
	if _, err := cl.Put(ctx, "dir/ttl", []byte("x"), client.WithTTL(time.Minute)); err != nil {
		t.Errorf("Put with TTL: %v", err)
	}
	if _, err := cl.Put(ctx, "big", make([]byte, 2<<20)); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Put 2 MiB: %v, want ErrTooLarge", err)
	}
	page, err := cl.List(ctx, "dir/")
	if err != nil || len(page.KVs) != 2 || page.KVs[0].Key != "dir/a b" || !bytes.Equal(page.KVs[0].Value, []byte{0, 1, 0xff}) {
		t.Errorf("List = %+v, %v", page, err)
	}
	del, err := cl.Delete(ctx, "dir/", client.WithPrefix())
	if err != nil || del.Deleted != 2 {
		t.Errorf("Delete prefix = %+v, %v", del, err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.ID != leader.ID || st.Leader.ID != leader.ID {
		t.Errorf("Status = %+v, %v; want the leader %s", st, err, leader.ID)
	}
	ms, err := cl.Members(ctx)
	if err != nil || len(ms.Members) != 3 {
		t.Errorf("Members = %+v, %v", ms, err)
	}

	// A write through a client that knows only a follower lands: the
	// follower forwards it to the leader.
	fc := newClient(t, followers[1])
	fput, err := fc.Put(ctx, "via/follower", []byte("landed"))
	must(t, err)
	if fput.Node != leader.ID || fput.Endpoint != followers[1].URL() {
		t.Errorf("write through %s: served by %q via %q, want the leader %s via the follower", followers[1].ID, fput.Node, fput.Endpoint, leader.ID)
	}
	for _, n := range c.Nodes() {
		r, err := n.HTTP().Get("via/follower", "consistency=stale", fmt.Sprintf("min_revision=%d", fput.Revision))
		must(t, err)
		if string(r.Body) != "landed" {
			t.Errorf("stale GET via/follower on %s: %s", n.ID, r)
		}
	}

	// Workers keep calling while the leader, the endpoint the client
	// prefers, is killed. Reads never fail; a write fails only when it was
	// in flight on the killed node (its outcome is then unknown), and
	// every acknowledged write is there afterwards.
	const workers = 6
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		acked     = map[string]string{}
		unknown   []string
		readFails []string
		calls     atomic.Int64
	)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				key := fmt.Sprintf("run/%d/%d", w, i)
				cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := cl.Put(cctx, key, []byte(valueOf(key)))
				mu.Lock()
				if err != nil {
					unknown = append(unknown, fmt.Sprintf("%s: %v", key, err))
				} else {
					acked[key] = valueOf(key)
				}
				mu.Unlock()
				if err == nil {
					cons := []client.Consistency{client.Linearizable, client.Leader, client.Stale}[rng.IntN(3)]
					var opts []client.Option
					if cons == client.Stale {
						opts = append(opts, client.WithMinRevision(1))
					}
					g, err := cl.Get(cctx, key, append(opts, client.WithConsistency(cons))...)
					if cons == client.Stale && errors.Is(err, client.ErrNotFound) {
						err = nil // a lagging node may not have it yet
					} else if err == nil && string(g.Value) != valueOf(key) {
						err = fmt.Errorf("value %q", g.Value)
					}
					if err != nil {
						mu.Lock()
						readFails = append(readFails, fmt.Sprintf("Get %s (%s): %v", key, cons, err))
						mu.Unlock()
					}
				}
				ccancel()
				calls.Add(1)
			}
		})
	}
	for calls.Load() < 100 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	must(t, c.Kill(leader.ID))
	killedAt := calls.Load()
	c.WaitForNewLeader(t, leader.ID)
	for calls.Load() < killedAt+200 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	t.Logf("%d calls, %d writes acknowledged, %d of unknown outcome", calls.Load(), len(acked), len(unknown))
	for _, f := range readFails {
		t.Error(f)
	}
	for _, u := range unknown {
		t.Log("unknown outcome: " + u)
		if !strings.Contains(u, "may have been applied") && !strings.Contains(u, "outcome unknown") {
			t.Errorf("a write failed for another reason than being in flight on the killed node: %s", u)
		}
	}
	if len(unknown) > workers {
		t.Errorf("%d writes failed, want at most one per worker (in flight at the kill)", len(unknown))
	}
	for _, n := range c.Live() {
		checkKeys(t, n, acked, "")
	}
	// Membership through the same client, with the leader dead.
	ms, err = cl.RemoveMember(ctx, leader.ID)
	if err != nil || len(ms.Members) != 2 {
		t.Fatalf("RemoveMember(%s) = %+v, %v", leader.ID, ms, err)
	}
}

// TestCLIBinaryValues round-trips binary data through the cairn binary:
// cairn kv put k < file, cairn kv get k > out, and compares the bytes.
func TestCLIBinaryValues(t *testing.T) {
	c := cluster.Start(t, 3)
	bin := cluster.Binary(t)
	dir := t.TempDir()
	var eps []string
	for _, n := range c.Nodes() {
		eps = append(eps, n.HTTPAddr)
	}
	follower := c.Followers(t)[0]

	value := make([]byte, 0, 256*3+64<<10)
	for range 3 {
		for b := range 256 {
			value = append(value, byte(b))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 64 << 10 {
		value = append(value, byte(rng.IntN(256)))
	}
	value = append(value, "\r\n\n"...)
	in := filepath.Join(dir, "in.bin")
	must(t, os.WriteFile(in, value, 0o644))

	run := func(stdin, stdout string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CAIRN_ENDPOINTS=")
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if stdin != "" {
			f, err := os.Open(stdin)
			must(t, err)
			defer f.Close()
			cmd.Stdin = f
		}
		var out bytes.Buffer
		if stdout != "" {
			f, err := os.Create(stdout)
			must(t, err)
			defer f.Close()
			cmd.Stdout = f
		} else {
			cmd.Stdout = &out
		}
		if err := cmd.Run(); err != nil {
			t.Fatalf("cairn %s: %v; stderr: %s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}
	for _, tc := range []struct{ name, endpoints string }{
		{"all endpoints", strings.Join(eps, ",")},
		{"one follower", follower.HTTPAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "cli/bin/" + strings.ReplaceAll(tc.name, " ", "-")
			if out := run(in, "", "kv", "put", key, "--endpoints", tc.endpoints); !strings.HasPrefix(out, "OK (revision ") {
				t.Errorf("kv put printed %q", out)
			}
			outFile := filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-"))
			run("", outFile, "kv", "get", key, "--endpoints", tc.endpoints)
			got, err := os.ReadFile(outFile)
			must(t, err)
			if !bytes.Equal(got, value) {
				t.Errorf("kv get returned %d bytes, want the %d put (first difference at %d)", len(got), len(value), firstDiff(got, value))
			}
			// And through the HTTP API directly.
			r, err := c.Leader(t).HTTP().Get(key)
			must(t, err)
			if !bytes.Equal(r.Body, value) {
				t.Errorf("GET %s: %d bytes, want the %d put", key, len(r.Body), len(value))
			}
		})
	}
}

// TestCLIWatchAndTxn runs cairn kv watch and cairn kv txn (the real
// binary) against a cluster: the watch prints each change of a transaction
// as it happens and exits 0 on SIGINT; a watch from a revision in the
// future fails with exit status 1 and says why, even with the short
// per-attempt timeout --timeout implies.
func TestCLIWatchAndTxn(t *testing.T) {
	c := cluster.Start(t, 3)
	bin := cluster.Binary(t)
	follower := c.Followers(t)[0]
	var eps []string
	for _, n := range c.Nodes() {
		eps = append(eps, n.HTTPAddr)
	}
	endpoints := "--endpoints=" + strings.Join(eps, ",")
	_, base := putOK(t, c.Leader(t), "cli/w/a", "old")

	watch := exec.Command(bin, "kv", "watch", "cli/w/", "--prefix", "--rev", fmt.Sprint(base), "--endpoints", follower.HTTPAddr)
	watch.Env = append(os.Environ(), "CAIRN_ENDPOINTS=")
	out := &syncWriter{}
	var errOut bytes.Buffer
	watch.Stdout, watch.Stderr = out, &errOut
	must(t, watch.Start())
	t.Cleanup(func() { _ = watch.Process.Kill() })

	txn := exec.Command(bin, "kv", "txn", endpoints)
	txn.Env = watch.Env
	txn.Stdin = strings.NewReader(fmt.Sprintf(`{"compare": [{"key": "cli/w/a", "target": "mod_revision", "op": "==", "value": %d}],
		"success": [{"op": "put", "key": "cli/w/a", "value": "new"}, {"op": "put", "key": "cli/w/bin", "value_base64": "AP8="},
		            {"op": "delete", "key": "cli/w/nothing"}],
		"failure": [{"op": "get", "key": "cli/w/a"}]}`, base))
	txnOut, err := txn.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(txnOut), fmt.Sprintf("SUCCEEDED (revision %d)\n", base+1)) {
		t.Fatalf("cairn kv txn: %v\n%s", err, txnOut)
	}
	want := fmt.Sprintf("PUT cli/w/a %d old\nPUT cli/w/a %d new\nPUT cli/w/bin %d <binary, 2 bytes>\n", base, base+1, base+1)
	deadline := time.Now().Add(10 * time.Second)
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("cairn kv watch printed %q, want %q; stderr %q", out.String(), want, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, watch.Process.Signal(os.Interrupt))
	if err := watch.Wait(); err != nil {
		t.Errorf("cairn kv watch after SIGINT: %v (stderr %q), want exit status 0", err, errOut.String())
	}

	future := exec.Command(bin, "kv", "watch", "cli/w/", "--prefix", "--rev", fmt.Sprint(base+1000), endpoints)
	future.Env = watch.Env
	start := time.Now()
	fout, err := future.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(fout), "future") {
		t.Errorf("cairn kv watch --rev in the future: %v, output %q; want exit status 1 saying why", err, fout)
	}
	t.Logf("a watch from the future refused after %v", time.Since(start).Round(time.Millisecond))
}

// syncWriter is a bytes.Buffer safe to read while a process writes to it.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// firstDiff returns the first index where a and b differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
