//go:build integration

// The integration test runs the client against a real three-node cluster of
// cairn processes. Run it with: go test -tags integration -run Integration ./client/
package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/client"
)

// freeAddr returns a local address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 50ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationThreeNodes(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "cairn")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/cairn").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ids := []string{"n1", "n2", "n3"}
	httpAddrs := map[string]string{}
	procs := map[string]*exec.Cmd{}
	for i, id := range ids {
		httpAddrs[id] = freeAddr(t)
		args := []string{"server", "--id", id, "--data-dir", filepath.Join(dir, id),
			"--http-addr", httpAddrs[id], "--raft-addr", freeAddr(t)}
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", httpAddrs["n1"])
		}
		logf, err := os.Create(filepath.Join(dir, id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[id] = cmd
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			_ = logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", id, b)
			}
		})
	}

	c := mustNewClientConfig(t, client.Config{
		Endpoints: []string{httpAddrs["n1"], httpAddrs["n2"], httpAddrs["n3"]}, Timeout: 5 * time.Second,
	})
	ctx := context.Background()
	waitFor(t, 30*time.Second, "three members with a leader", func() error {
		ms, err := c.Members(ctx)
		if err != nil {
			return err
		}
		if len(ms.Members) != 3 {
			return fmt.Errorf("%d members", len(ms.Members))
		}
		return nil
	})

	put, err := c.Put(ctx, "dir/a b", []byte{0, 1, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	for _, cons := range []client.Consistency{client.Linearizable, client.Leader, client.Stale} {
		g, err := c.Get(ctx, "dir/a b", client.WithConsistency(cons), client.WithMinRevision(put.Revision))
		if err != nil || string(g.Value) != "\x00\x01\xff" || g.ModRevision != put.Revision {
			t.Fatalf("Get %s = %+v, %v", cons, g, err)
		}
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get missing: %v", err)
	}
	_, err = c.Put(ctx, "dir/a b", []byte("x"), client.WithCAS(put.Revision+100))
	var ce *client.ConflictError
	if !errors.As(err, &ce) || ce.ModRevision != put.Revision {
		t.Errorf("CAS conflict: %v", err)
	}
	if _, err := c.Put(ctx, "ttl", []byte("x"), client.WithTTL(time.Minute)); err != nil {
		t.Errorf("Put with TTL: %v", err)
	}
	if _, err := c.Put(ctx, "idem", []byte("1"), client.WithIdempotencyKey("op-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "big", make([]byte, 2<<20)); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Put 2 MiB: %v, want ErrTooLarge", err)
	}
	page, err := c.List(ctx, "dir/")
	if err != nil || len(page.KVs) != 1 || page.KVs[0].Key != "dir/a b" {
		t.Errorf("List = %+v, %v", page, err)
	}

	// Kill the leader: the client fails over and writes go on.
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := st.Leader.ID
	if err := procs[leader].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.Put(wctx, "after", []byte("failover")); err != nil {
		t.Fatalf("Put after killing leader %s: %v", leader, err)
	}
	g, err := c.Get(ctx, "after")
	if err != nil || string(g.Value) != "failover" || g.Node == leader {
		t.Fatalf("Get after failover = %+v, %v", g, err)
	}
	ms, err := c.RemoveMember(ctx, leader)
	if err != nil || len(ms.Members) != 2 {
		t.Fatalf("RemoveMember(%s) = %+v, %v", leader, ms, err)
	}
}
