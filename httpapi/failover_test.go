package httpapi_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/inproc"
)

// TestWritesThroughLeaderHandover keeps writing through every node while
// the leader shuts down: no write may fail with a 500 or a broken
// connection, and every acknowledged write survives on the new majority.
func TestWritesThroughLeaderHandover(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)

	type outcome struct {
		key    string
		status int
		body   string
		err    error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for _, tn := range c.Followers(l) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("handover/%s/%04d", tn.ID, i)
				r, err := tryCall(tn, "PUT", kvPath(key), []byte("v"))
				mu.Lock()
				outcomes = append(outcomes, outcome{key, r.Status, string(r.Body), err})
				mu.Unlock()
			}
		}()
	}
	inproc.WaitFor(t, 10*time.Second, "writes to flow", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(outcomes) < 20 {
			return fmt.Errorf("%d writes so far", len(outcomes))
		}
		return nil
	})
	c.Stop(l)
	nl := c.Leader(t)
	mu.Lock()
	n := len(outcomes)
	mu.Unlock()
	inproc.WaitFor(t, 10*time.Second, "writes to the new leader", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(outcomes) < n+20 {
			return fmt.Errorf("%d writes since the handover", len(outcomes)-n)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	rev := nl.Store.Revision()
	inproc.WaitRevision(t, rev, c.Running()...)
	failed := 0
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			t.Errorf("PUT %s: %v", o.key, o.err)
		case o.status == http.StatusOK:
			for _, tn := range c.Running() {
				if _, _, err := tn.Store.Get(o.key); err != nil {
					t.Errorf("acknowledged write %s missing on %s: %v", o.key, tn.ID, err)
				}
			}
		case o.status >= 500 && o.status != http.StatusServiceUnavailable && o.status != http.StatusGatewayTimeout:
			t.Errorf("PUT %s: %d %s", o.key, o.status, o.body)
		default:
			failed++
			t.Logf("PUT %s during the handover: %d %s", o.key, o.status, o.body)
		}
	}
	t.Logf("%d writes, %d not acknowledged, new leader %s", len(outcomes), failed, nl.ID)
	if failed > 0 {
		t.Errorf("%d writes failed during a planned handover; they should wait for the new leader", failed)
	}
}

// TestTTLExpiresAfterLeaderChange: the reaper runs on whichever node leads.
func TestTTLExpiresAfterLeaderChange(t *testing.T) {
	c := inproc.Start(t, 3, inproc.Options{})
	l := c.Leader(t)
	f := c.Followers(l)[0]
	var put putJSON
	call(t, f, "PUT", kvPath("ttl/k")+"?ttl=1s", []byte("v")).wantOK(t).decode(t, &put)
	inproc.WaitRevision(t, put.Revision, c.Nodes...)
	c.Stop(l)
	c.Leader(t)
	// The deletion is replicated, not just hidden by the clock: the
	// revision moves on every node.
	inproc.WaitRevision(t, put.Revision+1, c.Running()...)
	for _, tn := range c.Running() {
		if _, _, err := tn.Store.Get("ttl/k"); err == nil {
			t.Errorf("%s still has ttl/k at revision %d", tn.ID, tn.Store.Revision())
		}
	}
	var lst listJSON
	call(t, f, "GET", "/v1/kv/?prefix=ttl/", nil).wantOK(t).decode(t, &lst)
	if len(lst.KVs) != 0 || lst.Revision != put.Revision+1 {
		t.Fatalf("after expiry: %+v", lst)
	}
}
